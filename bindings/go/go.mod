module github.com/jobrunner/jobrunner/bindings/go

go 1.21
