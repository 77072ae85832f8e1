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

def MuseDeriveBackward : Pass<"muse-derive-backward", "::mlir::ModuleOp"> {
  let summary = "Add the backward function of every acausal muse.attention";
  let description = [{
    Next to every function @F holding an acausal muse.attention, adds
    @F_backward(q, k, v, o, lse, dO) -> (dq, dk, dv) holding
    muse.attention_backward with the same spec (causal: not yet).
  }];
  let dependentDialects = ["::mlir::muse::MuseDialect"];
}

def MuseDecomposeBackward : Pass<"muse-decompose-backward"> {
  let summary = "Split muse.attention_backward into backward_rows, backward_keys, backward_centroid";
  let dependentDialects = ["::mlir::muse::MuseDialect"];
}

def MuseOutlineBackward : Pass<"muse-outline-backward", "::mlir::ModuleOp"> {
  let summary = "Turn each function of backward stages into the backward muse.plan";
  let description = [{
    Replaces every function holding backward stage ops with a muse.plan of the
    same name marked `muse.pass = "backward"`: its scratch buffers (laid out
    after the forward plan's in one workspace), kernels and launches. Runs
    before muse-outline.
  }];
  let dependentDialects = ["::mlir::muse::MuseDialect"];
}

#endif
