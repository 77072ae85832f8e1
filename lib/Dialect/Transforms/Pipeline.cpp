//===- Pipeline.cpp - The lowering pipeline compileSpec runs --------------===//
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

void mlir::muse::buildMuseLoweringPipeline(OpPassManager &pm) {
  pm.addPass(createMuseDeriveBackward());
  pm.addPass(createMuseDecompose());
  pm.addPass(createMuseDecomposeBackward());
  pm.addPass(createMuseSchedule());
  pm.addPass(createMuseOutlineBackward());
  pm.addPass(createMuseOutline());
}

void mlir::muse::registerMusePipelines() {
  registerMusePasses();
  PassPipelineRegistration<>("muse-lower", "decompose, schedule and outline muse.attention",
                             buildMuseLoweringPipeline);
}
