//===- MuseDialect.td - The muse dialect ----------------------*- tablegen -*-===//
#ifndef MUSE_DIALECT_TD
#define MUSE_DIALECT_TD

include "mlir/IR/OpBase.td"

def Muse_Dialect : Dialect {
  let name = "muse";
  let summary = "Multipole Semantic Attention: spec, pipeline stages, kernels and launch plan";
  let description = [{
    A `muse.attention` op carries a whole attention layer and its `#muse.spec`.
    `muse-decompose` splits it into the stages of ALGORITHM.md section 3,
    `muse-schedule` records tile sizes for the target, and `muse-outline`
    turns the stages into a `muse.plan` of kernels, workspace buffers and
    launches that the CUDA and host translations print.
  }];
  let cppNamespace = "::mlir::muse";
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class Muse_Op<string mnemonic, list<Trait> traits = []>
    : Op<Muse_Dialect, mnemonic, traits>;

#endif
