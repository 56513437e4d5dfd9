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
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
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
      }
      task();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  std::thread thread_;
};

}  // namespace

void submit_to_queue(const Device& device, std::function<void()> task) {
  static std::mutex registry_mutex;
  static auto* queues = new std::map<std::pair<int, int>, Queue*>();  // lives for the process
  Queue* queue;
  {
    std::lock_guard<std::mutex> lock(registry_mutex);
    Queue*& slot = (*queues)[{static_cast<int>(device.type), device.index}];
    if (slot == nullptr) slot = new Queue();
    queue = slot;
  }
  queue->push(std::move(task));
}

}  // namespace imprint
