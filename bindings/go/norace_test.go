//go:build !race

package jobrunner

// raceEnabled scales stress tests down under the race detector, which slows every
// cgo callback.
const raceEnabled = false
