//===- Passes.td - muse-decompose, muse-schedule, muse-outline -*- tablegen -*-===//
#ifndef MUSE_PASSES_TD
#define MUSE_PASSES_TD

include "mlir/Pass/PassBase.td"

def MuseDecompose : Pass<"muse-decompose"> {
  let summary = "Split muse.attention into the stages of the acausal forward";
  let description = [{
    k-means of keys and queries, their permutations, stage-1 summaries, the
    near-cluster selection (near_clusters > 0), the far field and the dipole
    correction (order 1). A causal spec is rejected: causal lowering is not
    implemented yet.
  }];
  let dependentDialects = ["::mlir::muse::MuseDialect"];
}

def MuseSchedule : Pass<"muse-schedule"> {
  let summary = "Choose tile sizes and threads for the target arch and head dim";
  let description = [{
    Records a #muse.schedule on every summarize, far_field and dipole op. The
    spec's tiling fields (block_q, block_k, warps) override the defaults.
  }];
  let dependentDialects = ["::mlir::muse::MuseDialect"];
}

def MuseOutline : Pass<"muse-outline", "::mlir::ModuleOp"> {
  let summary = "Turn each scheduled function into a muse.plan of kernels, buffers and launches";
  let description = [{
    Replaces every function whose body holds scheduled stage ops with a
    `muse.plan` of the same name: the workspace buffers of templates/muse/params.cuh
    the stages need, one `muse.kernel` per extern "C" wrapper and the launches
    in the order of templates/README.md.
  }];
  let dependentDialects = ["::mlir::muse::MuseDialect"];
}

#endif
