//===- muse-opt.cpp - Runs muse passes on MLIR, for lit -------------------===//
#include "muse/Dialect/Muse/IR/MuseDialect.h"
#include "muse/Dialect/Muse/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::muse::registerMusePipelines();
  mlir::DialectRegistry registry;
  registry.insert<mlir::muse::MuseDialect, mlir::func::FuncDialect>();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "muse optimizer driver\n", registry));
}
