# Sourced (with $root set to the repository root) before the go command builds the
# binding: Go's build cache does not see changes to C headers outside a package (`go
# help cache`), so after include/jobrunner.h changes, a cached build of the package
# would keep cgo's view of the old header (a struct of the wrong size, say). Naming
# the header's checksum in CGO_CFLAGS, part of every cache key, makes each header's
# build its own. (The library itself is linked anew every time.)
jrgo_header_sum=$(cksum < "$root/include/jobrunner.h" | cut -d' ' -f1)
CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DJRGO_HEADER_CKSUM=$jrgo_header_sum"
export CGO_CFLAGS
