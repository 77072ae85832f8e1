//===- kernels.cuh - The one header a generated MuSe translation unit includes
//
// The generated TU defines `struct MuseCfg` and one extern "C" __global__
// wrapper per launch (templates/README.md) calling the templates below.
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_TEMPLATES_KERNELS_CUH
#define MUSE_TEMPLATES_KERNELS_CUH

#include "muse/params.cuh"
#include "muse/common.cuh"
#include "muse/kmeans.cuh"
#include "muse/cluster_sort.cuh"
#include "muse/summarize.cuh"
#include "muse/select_near.cuh"
#include "muse/far_field.cuh"
#include "muse/dipole.cuh"
#include "muse/causal_window.cuh"
#include "muse/causal_levels.cuh"
#include "muse/backward_rows.cuh"
#include "muse/backward_pairs.cuh"
#include "muse/backward_keys.cuh"
#include "muse/backward_centroid.cuh"
#include "muse/backward_causal.cuh"
#include "muse/emit.cuh"

#endif // MUSE_TEMPLATES_KERNELS_CUH
