// The one CPU thread pool. Sized by IMPRINT_NUM_THREADS (default: the number
// of cores); the BLAS library is told the same count (through
// on_thread_count, which the CPU backend's cpu/blas.cc registers). The
// calling thread takes part in the work, so a pool of N threads has N-1 workers.
#pragma once
#include <cstdint>
#include <functional>

namespace imprint {

int num_threads();
// Changes the pool size (1..1024); also sets the BLAS thread count.
void set_num_threads(int n);

// A library with threads of its own (the BLAS) follows the pool's size: `fn`
// is called with the count when the pool starts (at once if it already has)
// and on every set_num_threads. One listener; set at static initialisation.
void on_thread_count(void (*fn)(int));

// Calls fn(begin, end) over [0, n) split into chunks of at least `grain`
// elements, in parallel. Exceptions from fn are rethrown on the caller after
// all chunks finish. Calls from inside a pool task, or made while another
// thread's job holds the pool, run serially on the caller.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace imprint
