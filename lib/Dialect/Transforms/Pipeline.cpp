//===- Pipeline.cpp - The lowering pipeline compileSpec runs --------------===//
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

void mlir::muse::buildMuseLoweringPipeline(OpPassManager &pm) {
  pm.addPass(createMuseDecompose());
  pm.addPass(createMuseSchedule());
  pm.addPass(createMuseOutline());
}

void mlir::muse::registerMusePipelines() {
  registerMusePasses();
  PassPipelineRegistration<>("muse-lower", "decompose, schedule and outline muse.attention",
                             buildMuseLoweringPipeline);
}
