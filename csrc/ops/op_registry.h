// The neural-network op library's entry point: each op (conv2d_forward,
// group_norm_backward, ...) registers a plan function that validates its
// inputs and attributes, allocates its outputs and returns a Launch. One N-API
// function (nnOp) reaches them all; lib/nn gives each a typed wrapper.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/ops.h"

namespace imprint {
namespace ops {

// Named attributes from JavaScript: numbers (booleans arrive as 0/1) and lists of numbers.
class Attrs {
 public:
  std::map<std::string, double> numbers;
  std::map<std::string, std::vector<double>> lists;

  // Each getter throws INVALID_ARGUMENT naming `op` and the attribute when it
  // is missing (and has no default) or has the wrong kind of value.
  int64_t get_int(const char* op, const char* name) const;
  int64_t get_int(const char* op, const char* name, int64_t fallback) const;
  double get_number(const char* op, const char* name) const;
  double get_number(const char* op, const char* name, double fallback) const;
  bool get_bool(const char* op, const char* name, bool fallback) const;
  std::vector<int64_t> get_ints(const char* op, const char* name) const;
  std::vector<int64_t> get_ints(const char* op, const char* name, const std::vector<int64_t>& fallback) const;
  bool has(const char* name) const { return numbers.count(name) || lists.count(name); }
};

// Inputs in the op's documented order; nullptr for an omitted optional input.
using OpInputs = std::vector<const Tensor*>;
using PlanFn = Launch (*)(const OpInputs& inputs, const Attrs& attrs);

void register_op(const char* name, PlanFn plan);
Launch plan_op(const std::string& name, const OpInputs& inputs, const Attrs& attrs);
std::vector<std::string> op_names();

struct OpRegistrar {
  OpRegistrar(const char* name, PlanFn plan) { register_op(name, plan); }
};
#define IMPRINT_REGISTER_OP(name, plan) static ::imprint::ops::OpRegistrar imprint_op_##name(#name, plan)

}  // namespace ops
}  // namespace imprint
