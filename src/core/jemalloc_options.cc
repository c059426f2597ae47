// jemalloc's options for vigil's binaries (the vigil_jemalloc object library
// links jemalloc with them), read at the process's start; MALLOC_CONF in the
// environment overrides them.
//
// Freed memory is kept, not given back to the system after 10 s: a page
// given back and used again is faulted in again, and on the VMs vigil is
// measured on a fault costs about 10 µs and now and then milliseconds, paid
// by the event being scored. A server's memory then stays at its peak, which
// its state sets. No separate arena for allocations over 8 MiB (it gives
// them back at once): the feature engine's tables are such, and
// core::Pretouch (limits.pretouch_mb) must be able to serve them. And a
// freed extent may be split for an allocation of any size: jemalloc's
// default (lg_extent_max_active_fit:6) splits an extent only for requests
// of at least 1/64 of it, so the 4 MiB blocks Pretouch frees served none of
// the small objects (slabs of a few pages), whose first touches went on
// while scoring: 5,046 of 32,645 events took a page fault in
// serve_engine_benchmark with 1,024 MiB pretouched, 167 with this option.
// And transparent huge pages for the heap (where the system allows them:
// Debian's default is on request, which this is): the state's lookups are
// random reads over hundreds of MiB, and with 2 MiB pages they miss the
// TLB far less. In serve_engine_benchmark the features stage went from 3.2
// to 2.6 µs, and the one multi-millisecond call per run (a page fault the
// host took 10-15 ms over) to 1.5 ms (bench/README.md).
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf =
    "dirty_decay_ms:-1,muzzy_decay_ms:-1,oversize_threshold:0,lg_extent_max_active_fit:30,"
    "thp:always";
}
