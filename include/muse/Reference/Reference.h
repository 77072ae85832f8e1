//===- Reference.h - The CPU reference of MuSe (double precision) ---------===//
//
// The executable statement of ALGORITHM.md: exact attention, the deterministic
// k-means, acausal and causal MuSe forward, and their backward passes, in plain
// C++17 double precision. GPU kernels and their tests are checked against it.
//
// Usage:
//
//   #include "muse/Reference/Reference.h"
//   using namespace muse::ref;
//   RefShape shape{/*B=*/1, /*H=*/4, /*Hkv=*/1, /*N=*/512, /*M=*/512,
//                  /*D=*/64, /*Dv=*/64};
//   MuseConfig cfg;                  // acausal, C_q = C_k = 64, T = 3, dipole
//   cfg.queryClusters = cfg.keyClusters = 16;
//   MuseForwardResult fwd;
//   if (RefStatus st = museForward(cfg, shape, q, k, v, nullptr, fwd); !st)
//     std::cerr << st.message << "\n";   // bad input: a message, not a crash
//   ForwardResult exact;
//   exactForward(shape, /*causal=*/false, cfg.scale, q, k, v, exact);
//   // Compare a GPU kernel on its own partition:
//   museForward(cfg, shape, q, k, v, &gpuPartitions, fwd);
//   Gradients g;
//   museBackward(cfg, shape, q, k, v, dO, dLse, &fwd.partitions, g);
//
//===----------------------------------------------------------------------===//
#ifndef MUSE_REFERENCE_REFERENCE_H
#define MUSE_REFERENCE_REFERENCE_H

#include "muse/Reference/Exact.h"
#include "muse/Reference/KMeans.h"
#include "muse/Reference/Muse.h"
#include "muse/Reference/Types.h"

#endif // MUSE_REFERENCE_REFERENCE_H
