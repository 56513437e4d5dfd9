#include "ops/op_registry.h"

#include <cmath>
#include <mutex>

#include "core/error.h"

namespace imprint {
namespace ops {
namespace {

std::map<std::string, PlanFn>& table() {
  static auto* t = new std::map<std::string, PlanFn>();
  return *t;
}
std::mutex& table_mutex() {
  static auto* m = new std::mutex();
  return *m;
}

int64_t as_int(const char* op, const char* name, double v) {
  if (!std::isfinite(v) || std::floor(v) != v || std::fabs(v) > 9007199254740991.0) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + name + " must be an integer, got " + std::to_string(v));
  }
  return static_cast<int64_t>(v);
}

[[noreturn]] void missing(const char* op, const char* name, const char* kind) {
  fail(ErrorCode::InvalidArgument, std::string(op) + ": attribute '" + name + "' (" + kind + ") is required");
}

}  // namespace

int64_t Attrs::get_int(const char* op, const char* name) const {
  auto it = numbers.find(name);
  if (it == numbers.end()) missing(op, name, "an integer");
  return as_int(op, name, it->second);
}

int64_t Attrs::get_int(const char* op, const char* name, int64_t fallback) const {
  return numbers.count(name) ? get_int(op, name) : fallback;
}

double Attrs::get_number(const char* op, const char* name) const {
  auto it = numbers.find(name);
  if (it == numbers.end()) missing(op, name, "a number");
  if (!std::isfinite(it->second)) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + name + " must be a finite number");
  }
  return it->second;
}

double Attrs::get_number(const char* op, const char* name, double fallback) const {
  return numbers.count(name) ? get_number(op, name) : fallback;
}

bool Attrs::get_bool(const char* op, const char* name, bool fallback) const {
  auto it = numbers.find(name);
  if (it == numbers.end()) return fallback;
  if (it->second != 0 && it->second != 1) {
    fail(ErrorCode::InvalidArgument, std::string(op) + ": " + name + " must be a boolean");
  }
  return it->second != 0;
}

std::vector<int64_t> Attrs::get_ints(const char* op, const char* name) const {
  auto it = lists.find(name);
  if (it == lists.end()) missing(op, name, "a list of integers");
  std::vector<int64_t> out;
  for (double v : it->second) out.push_back(as_int(op, name, v));
  return out;
}

std::vector<int64_t> Attrs::get_ints(const char* op, const char* name, const std::vector<int64_t>& fallback) const {
  return lists.count(name) ? get_ints(op, name) : fallback;
}

void register_op(const char* name, PlanFn plan) {
  std::lock_guard<std::mutex> lock(table_mutex());
  table()[name] = plan;
}

Launch plan_op(const std::string& name, const OpInputs& inputs, const Attrs& attrs) {
  PlanFn plan;
  {
    std::lock_guard<std::mutex> lock(table_mutex());
    auto it = table().find(name);
    if (it == table().end()) fail(ErrorCode::InvalidArgument, "nnOp: unknown op '" + name + "'");
    plan = it->second;
  }
  return plan(inputs, attrs);
}

std::vector<std::string> op_names() {
  std::lock_guard<std::mutex> lock(table_mutex());
  std::vector<std::string> names;
  for (const auto& entry : table()) names.push_back(entry.first);
  return names;
}

}  // namespace ops
}  // namespace imprint
