// IMPRINT_HD marks functions compiled for both the host and CUDA devices, so
// the CPU and GPU backends share one definition (RNG, half conversions).
#pragma once
#if defined(__CUDACC__)
#define IMPRINT_HD __host__ __device__ __forceinline__
#else
#define IMPRINT_HD inline
#endif
