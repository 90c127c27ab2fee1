module github.com/jobrunner/jobrunner/examples/go

go 1.21

require github.com/jobrunner/jobrunner/bindings/go v0.0.0

replace github.com/jobrunner/jobrunner/bindings/go => ../../bindings/go
