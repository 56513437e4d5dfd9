#include "core/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace imprint {
namespace {

thread_local bool t_inside_pool = false;

// on_thread_count's listener (constant-initialised, so registering it from
// another file's static initialiser is safe), and whether the pool has started.
std::atomic<void (*)(int)> g_thread_count_listener{nullptr};
std::atomic<bool> g_pool_started{false};

void tell_listener(int n) {
  if (void (*fn)(int) = g_thread_count_listener.load()) fn(n);
}

// One parallel_for call. Workers hold it by shared_ptr, so a worker that wakes
// late for a finished job finds no chunks left and never touches a new job.
struct Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t chunks = 0;
  std::atomic<int64_t> next_chunk{0};
  int64_t pending = 0;  // guarded by Pool::state_mutex_
  std::exception_ptr error;
};

class Pool {
 public:
  explicit Pool(int n) { start(n); }

  int size() {
    std::lock_guard<std::mutex> lock(job_mutex_);
    return static_cast<int>(workers_.size()) + 1;
  }

  void resize(int n) {
    std::lock_guard<std::mutex> lock(job_mutex_);
    stop();
    start(n);
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (t_inside_pool) {
      fn(0, n);
      return;
    }
    // A caller that finds the pool busy (the JavaScript thread converting data
    // while an op runs on the CPU queue) works alone rather than wait.
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (!job_lock.owns_lock()) {
      fn(0, n);
      return;
    }
    int64_t threads = static_cast<int64_t>(workers_.size()) + 1;
    int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, threads * 4);
    if (chunks <= 1 || threads == 1) {
      job_lock.unlock();
      fn(0, n);
      return;
    }
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->n = n;
    job->chunks = chunks;
    job->pending = chunks;
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
    work(*job);
    std::unique_lock<std::mutex> lock(state_mutex_);
    done_.wait(lock, [&] { return job->pending == 0; });
    job_.reset();
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void start(int n) {
    quit_ = false;
    for (int i = 1; i < n; ++i) workers_.emplace_back([this] { loop(); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(state_mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void loop() {
    t_inside_pool = true;
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(state_mutex_);
        wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
        if (quit_) return;
        seen = generation_;
        job = job_;
      }
      if (job) work(*job);
    }
  }

  // Takes chunks of `job` until none are left.
  void work(Job& job) {
    bool was_inside = t_inside_pool;
    t_inside_pool = true;
    for (;;) {
      int64_t c = job.next_chunk.fetch_add(1);
      if (c >= job.chunks) break;
      int64_t begin = job.n * c / job.chunks, end = job.n * (c + 1) / job.chunks;
      std::exception_ptr error;
      try {
        (*job.fn)(begin, end);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(state_mutex_);
      if (error && !job.error) job.error = error;
      if (--job.pending == 0) done_.notify_all();
    }
    t_inside_pool = was_inside;
  }

  std::mutex job_mutex_;  // one parallel job at a time
  std::mutex state_mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  bool quit_ = false;
  uint64_t generation_ = 0;
  std::shared_ptr<Job> job_;
};

int default_threads() {
  if (const char* env = std::getenv("IMPRINT_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n >= 1 && n <= 1024) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

Pool& pool() {
  static Pool* p = [] {
    int n = default_threads();
    tell_listener(n);
    g_pool_started = true;
    return new Pool(n);  // never destroyed: workers may outlive static destructors at exit
  }();
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }

void set_num_threads(int n) {
  n = std::max(1, std::min(n, 1024));
  pool().resize(n);
  tell_listener(n);
}

void on_thread_count(void (*fn)(int)) {
  g_thread_count_listener = fn;
  if (g_pool_started) fn(num_threads());
}

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) { pool().run(n, grain, fn); }

}  // namespace imprint
