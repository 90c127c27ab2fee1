// Definitions shared by the preambles of the package's Go files (each cgo preamble is
// compiled on its own).
#ifndef JRGO_H
#define JRGO_H

// Worker threads that can keep a Go job at once (see jrgo_slot in cgo.go, keptBy in
// task.go).
#define JRGO_SLOTS 4096

#endif
