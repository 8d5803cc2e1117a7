/* vk_hd: the qualifier of the kernels' arithmetic helpers (kernels/<name>_math.h): device and
 * host functions under nvcc, plain static inline C under gcc, so the host tests compile
 * the very same code the kernels run. Headers using it are C (no C++ features). */
#ifndef VLQ_VK_HD_H
#define VLQ_VK_HD_H

#ifdef __CUDACC__
#define VK_HD __host__ __device__ static inline
#else
#define VK_HD static inline
#endif

#endif
