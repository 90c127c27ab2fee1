module github.com/jobrunner/jobrunner/bench/go

go 1.21

require github.com/jobrunner/jobrunner/bindings/go v0.0.0

require golang.org/x/sync v0.10.0

replace github.com/jobrunner/jobrunner/bindings/go => ../../bindings/go
