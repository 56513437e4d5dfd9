// The parity suite's driver: makes each case's inputs on the CPU, runs the
// case on the CPU and on cuda:0, and compares. Exits 0 when every case
// passes, 1 when one fails, and 77 (ctest's "skipped") when there is no GPU
// and --cpu-only was not given. --bench times the cases on the GPU instead.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "core/backend.h"
#include "core/error.h"
#include "ops/ops.h"
#include "parity.h"

namespace imprint {
namespace parity {
namespace {

std::map<std::string, CaseFactory>& cases() {
  static std::map<std::string, CaseFactory> all;
  return all;
}

uint64_t seed_of(const std::string& name, size_t input) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h ^ (0x9e3779b97f4a7c15ull * (input + 1));
}

Tensor make_input(const InputSpec& spec, uint64_t seed) {
  const int64_t n = shape_numel(spec.shape, spec.dtype);
  std::mt19937_64 gen(seed);
  std::vector<double> v(static_cast<size_t>(n));
  switch (spec.fill) {
    case InputSpec::Fill::Normal: {
      std::normal_distribution<double> d(spec.a, spec.b);
      for (auto& x : v) x = d(gen);
      break;
    }
    case InputSpec::Fill::Uniform: {
      std::uniform_real_distribution<double> d(spec.a, spec.b);
      for (auto& x : v) x = d(gen);
      break;
    }
    case InputSpec::Fill::Integers: {
      std::uniform_int_distribution<int64_t> d(static_cast<int64_t>(spec.a), static_cast<int64_t>(spec.b) - 1);
      for (auto& x : v) x = static_cast<double>(d(gen));
      break;
    }
    case InputSpec::Fill::Mask: {
      std::bernoulli_distribution d(spec.a);
      for (auto& x : v) x = d(gen) ? 1 : 0;
      break;
    }
    case InputSpec::Fill::Constant:
      std::fill(v.begin(), v.end(), spec.a);
      break;
  }
  if (spec.dtype == DType::I32 || spec.dtype == DType::I64 || spec.dtype == DType::U8) {
    std::vector<int64_t> ints(v.begin(), v.end());
    return ops::from_host(ints.data(), ints.size() * sizeof(int64_t), spec.shape, DType::I64, spec.dtype);
  }
  std::vector<float> f(v.begin(), v.end());
  return ops::from_host(f.data(), f.size() * sizeof(float), spec.shape, DType::F32, spec.dtype);
}

std::vector<float> host_values(const Tensor& t) {
  const Tensor cpu = t.device.is_cpu() ? t : run_launch(ops::to_device(t, Device::cpu()));
  std::vector<float> out(static_cast<size_t>(cpu.numel()));
  ops::to_host(cpu, DType::F32, out.data());
  return out;
}

struct Outcome {
  bool ok = true;
  std::string detail;
};

Outcome compare(const Tensor& cpu, const Tensor& gpu, const Tolerance& tol, size_t index) {
  char buf[512];
  if (cpu.shape != gpu.shape || cpu.dtype != gpu.dtype) {
    std::snprintf(buf, sizeof buf, "output %zu: cpu %s vs cuda %s", index, cpu.describe().c_str(), gpu.describe().c_str());
    return {false, buf};
  }
  const std::vector<float> a = host_values(cpu), b = host_values(gpu);
  double worst = 0, worst_ref = 0, worst_got = 0;
  size_t worst_at = 0, bad = 0;
  for (size_t i = 0; i < a.size(); i++) {
    const double err = std::fabs(static_cast<double>(a[i]) - b[i]);
    const double allowed = tol.atol + tol.rtol * std::fabs(a[i]);
    const double excess = std::isnan(err) ? INFINITY : err - allowed;
    if (std::isnan(a[i]) != std::isnan(b[i]) || excess > 0) bad++;
    if (i == 0 || excess > worst) {
      worst = excess;
      worst_at = i;
      worst_ref = a[i];
      worst_got = b[i];
    }
  }
  if (bad == 0) return {};
  std::snprintf(buf, sizeof buf, "output %zu %s: %zu of %zu values out of tolerance (rtol %g, atol %g); worst at %zu: cpu %.7g, cuda %.7g",
                index, cpu.describe().c_str(), bad, a.size(), tol.rtol, tol.atol, worst_at, worst_ref, worst_got);
  return {false, buf};
}

Outcome check_finite(const Tensors& outs) {
  for (size_t i = 0; i < outs.size(); i++) {
    if (!is_floating(outs[i].dtype)) continue;
    for (float x : host_values(outs[i])) {
      if (!std::isfinite(x)) return {false, "output " + std::to_string(i) + " " + outs[i].describe() + " holds a non-finite value"};
    }
  }
  return {};
}

Outcome run_case(const std::string& name, CaseFactory factory, bool cpu_only) {
  const ParityCase c = factory();
  Tensors cpu_in;
  for (size_t i = 0; i < c.inputs.size(); i++) cpu_in.push_back(make_input(c.inputs[i], seed_of(name, i)));
  const Tensors cpu_out = c.run(cpu_in);
  if (cpu_out.empty()) return {false, "the case returned no outputs"};
  if (cpu_only) return check_finite(cpu_out);
  Tensors gpu_in;
  for (const Tensor& t : cpu_in) gpu_in.push_back(run_launch(ops::to_device(t, Device::cuda(0))));
  const Tensors gpu_out = c.run(gpu_in);
  if (gpu_out.size() != cpu_out.size()) {
    return {false, "cpu gave " + std::to_string(cpu_out.size()) + " outputs, cuda " + std::to_string(gpu_out.size())};
  }
  for (size_t i = 0; i < cpu_out.size(); i++) {
    if (std::find(c.skip_outputs.begin(), c.skip_outputs.end(), i) != c.skip_outputs.end()) continue;
    if (!gpu_out[i].device.is_cpu() && gpu_out[i].device.type != DeviceType::CUDA) return {false, "output not on cuda"};
    const Tolerance tol = i < c.tolerances.size() ? c.tolerances[i] : default_tolerance(cpu_out[i].dtype);
    Outcome o = compare(cpu_out[i], gpu_out[i], tol, i);
    if (!o.ok) return o;
  }
  return {};
}

// Median wall time of `c.run` on cuda:0 inputs, in seconds.
double bench_case(const std::string& name, CaseFactory factory) {
  const ParityCase c = factory();
  Tensors gpu_in;
  for (size_t i = 0; i < c.inputs.size(); i++) {
    gpu_in.push_back(run_launch(ops::to_device(make_input(c.inputs[i], seed_of(name, i)), Device::cuda(0))));
  }
  // Kernels run on the device's stream: wait for them, or only the launches are timed.
  Backend& gpu = backend_for(Device::cuda(0));
  for (int i = 0; i < 2; i++) c.run(gpu_in);
  gpu.synchronize();
  std::vector<double> times;
  for (int i = 0; i < 10; i++) {
    const auto t0 = std::chrono::steady_clock::now();
    c.run(gpu_in);
    gpu.synchronize();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

InputSpec normal(const Shape& shape, DType dtype, double mean, double std) { return {shape, dtype, InputSpec::Fill::Normal, mean, std}; }
InputSpec uniform(const Shape& shape, DType dtype, double lo, double hi) { return {shape, dtype, InputSpec::Fill::Uniform, lo, hi}; }
InputSpec integers(const Shape& shape, DType dtype, int64_t lo, int64_t hi) {
  return {shape, dtype, InputSpec::Fill::Integers, static_cast<double>(lo), static_cast<double>(hi)};
}
InputSpec mask(const Shape& shape, DType dtype, double p) { return {shape, dtype, InputSpec::Fill::Mask, p, 0}; }
InputSpec constant(const Shape& shape, DType dtype, double value) { return {shape, dtype, InputSpec::Fill::Constant, value, 0}; }

Tolerance default_tolerance(DType dtype) {
  switch (dtype) {
    case DType::F16: return {1e-2, 1e-3};
    case DType::BF16: return {2e-2, 1e-2};
    case DType::F32: return {1e-4, 1e-5};
    default: return {0, 0};
  }
}

void register_case(const char* name, CaseFactory factory) { cases()[name] = factory; }

Tensor run_launch(ops::Launch launch) {
  launch.run();
  return launch.output;
}

Tensors run_op(const std::string& op, const ops::OpInputs& inputs, const ops::Attrs& attrs) {
  ops::Launch launch = ops::plan_op(op, inputs, attrs);
  launch.run();
  return launch.outputs.empty() ? Tensors{launch.output} : launch.outputs;
}

ops::Attrs attrs(std::initializer_list<std::pair<const char*, double>> numbers,
                 std::initializer_list<std::pair<const char*, std::vector<double>>> lists) {
  ops::Attrs a;
  for (const auto& n : numbers) a.numbers[n.first] = n.second;
  for (const auto& l : lists) a.lists[l.first] = l.second;
  return a;
}

}  // namespace parity
}  // namespace imprint

int main(int argc, char** argv) {
  using namespace imprint;
  bool cpu_only = false, bench = false;
  std::string filter;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--cpu-only") == 0) cpu_only = true;
    else if (std::strcmp(argv[i], "--bench") == 0) bench = true;
    else filter = argv[i];
  }
  if (!cpu_only) {
    const CudaStatus status = cuda_status();
    if (!status.available) {
      std::printf("imprint_parity: no CUDA device (%s); skipped. --cpu-only checks the cases on the CPU.\n", status.reason.c_str());
      return 77;
    }
    if (bench) {
      int failed = 0;
      for (const auto& [name, factory] : parity::cases()) {
        if (!filter.empty() && name.find(filter) == std::string::npos) continue;
        try {
          const double seconds = parity::bench_case(name, factory);
          std::printf("{\"suite\":\"native\",\"name\":\"%s\",\"device\":\"cuda:0\",\"gpu\":\"%s\",\"imprint_s\":%.9g}\n",
                      name.c_str(), status.devices[0].name.c_str(), seconds);
        } catch (const std::exception& e) {
          std::string what = e.what();
          for (char& ch : what) if (ch == '"' || ch == '\\' || ch == '\n') ch = '\'';  // keep the line valid JSON
          std::printf("{\"suite\":\"native\",\"name\":\"%s\",\"error\":\"%s\"}\n", name.c_str(), what.c_str());
          failed++;
        }
      }
      return failed == 0 ? 0 : 1;
    }
    std::printf("imprint_parity: cpu against cuda:0 (%s)\n", status.devices.empty() ? "?" : status.devices[0].name.c_str());
  }
  int passed = 0, failed = 0;
  for (const auto& [name, factory] : parity::cases()) {
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    parity::Outcome o;
    try {
      o = parity::run_case(name, factory, cpu_only);
    } catch (const std::exception& e) {
      o = {false, std::string("threw: ") + e.what()};
    }
    std::printf("%s %s%s%s\n", o.ok ? "  ok  " : "  FAIL", name.c_str(), o.ok ? "" : ": ", o.detail.c_str());
    (o.ok ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
