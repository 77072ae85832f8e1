//===- MuseAttrs.td - Spec, schedule and launch-dimension attributes -*- tablegen -*-===//
#ifndef MUSE_ATTRS_TD
#define MUSE_ATTRS_TD

include "muse/Dialect/Muse/IR/MuseDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

// Which side of attention a k-means, a permutation or a buffer belongs to:
// queries (B*H heads) or keys and values (B*Hkv heads).
def Muse_Side : I32EnumAttr<"Side", "query or key side", [
    I32EnumAttrCase<"Query", 0, "query">,
    I32EnumAttrCase<"Key", 1, "key">]> {
  let cppNamespace = "::mlir::muse";
}

class Muse_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Muse_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Muse_SpecAttr : Muse_Attr<"Spec", "spec"> {
  let summary = "every field of a MuSe attention spec";
  let description = [{
    Mirrors `muse::Spec` field by field (the YAML spec's names). Printed in a
    fixed order; when parsed, fields may come in any order and missing ones
    take the spec defaults. `scale = auto` means 1/sqrt(head_dim).

      #muse.spec<name = "acausal_d64", causal = false, head_dim = 64,
                 value_dim = 64, dtype = bf16, scale = auto, ...>
  }];
  let parameters = (ins
    StringRefParameter<"layer name">:$name,
    "bool":$causal,
    "int64_t":$headDim,
    "int64_t":$valueDim,
    "::mlir::Type":$dtype,
    "::mlir::FloatAttr":$scale, // null = auto
    "int64_t":$kvHeadsRatio,
    "int64_t":$queryClusters,
    "int64_t":$keyClusters,
    "int64_t":$kmeansIters,
    "int64_t":$order,
    "int64_t":$nearClusters,
    "int64_t":$blockSize,
    "int64_t":$windowBlocks,
    "int64_t":$blockQ,
    "int64_t":$blockK,
    "int64_t":$warps,
    StringRefParameter<"target arch, e.g. sm_90">:$arch
  );
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// The scale actually used: `scale` or 1/sqrt(head_dim).
    double getEffectiveScale() const;
    /// Compute capability as an integer (90 for "sm_90"); 0 if malformed.
    int64_t getArchNumber() const;
    /// 1 + D + Dv: floats per (query cluster, key cluster) summary.
    int64_t getSummaryWidth() const { return 1 + getHeadDim() + getValueDim(); }
  }];
}

def Muse_ScheduleAttr : Muse_Attr<"Schedule", "schedule"> {
  let summary = "tile sizes and threads chosen for the target";
  let parameters = (ins "int64_t":$block_q, "int64_t":$block_k, "int64_t":$threads);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Muse_DimAttr : Muse_Attr<"Dim", "dim"> {
  let summary = "a launch dimension over the runtime shape: ceil(sym/div)*mul";
  let description = [{
    `sym` is one of "1", "N", "M", "B*H", "B*Hkv" (LaunchPlan.h `Sym`). Printed
    and parsed in the text form of `muse::DimExpr`, e.g. `#muse.dim<"ceil(N/256)">`.
  }];
  let parameters = (ins StringRefParameter<"symbol">:$sym, "int64_t":$div, "int64_t":$mul);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    ::muse::DimExpr toDimExpr() const;
    static DimAttr fromDimExpr(::mlir::MLIRContext *context, const ::muse::DimExpr &e);
  }];
}

#endif
