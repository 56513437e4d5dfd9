#include "core/executor.h"

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace imprint {
namespace {

class Queue {
 public:
  Queue() : thread_([this] { loop(); }) { thread_.detach(); }

  void push(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

  void close_and_wait() {
    std::deque<std::function<void()>> dropped;
    std::unique_lock<std::mutex> lock(mutex_);
    closed_ = true;
    dropped.swap(tasks_);
    idle_.wait(lock, [&] { return !busy_; });
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop_front();
        busy_ = true;
      }
      task();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        busy_ = false;
      }
      idle_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_, idle_;
  bool busy_ = false;
  bool closed_ = false;
  std::deque<std::function<void()>> tasks_;
  std::thread thread_;
};

std::mutex& registry_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

std::map<std::pair<int, int>, Queue*>& queues() {
  static auto* q = new std::map<std::pair<int, int>, Queue*>();  // lives for the process
  return *q;
}

}  // namespace

void submit_to_queue(const Device& device, std::function<void()> task) {
  Queue* queue;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    Queue*& slot = queues()[{static_cast<int>(device.type), device.index}];
    if (slot == nullptr) slot = new Queue();
    queue = slot;
  }
  queue->push(std::move(task));
}

void shutdown_queues() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  for (auto& entry : queues()) entry.second->close_and_wait();
}

}  // namespace imprint
