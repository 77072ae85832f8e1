//===- muse-translate.cpp - Spec import and the muse exporters, for lit ---===//
//
//   --muse-import        YAML spec  -> muse.attention module (muse-import)
//   --muse-to-cuda       muse.plan  -> kernel translation unit
//   --muse-to-host       muse.plan  -> C++ launcher source
//   --muse-to-plan       muse.plan  -> serialized LaunchPlan
//   --muse-plan-layout   serialized LaunchPlan -> workspace offsets for --shape
//
//===----------------------------------------------------------------------===//
#include "muse/Compiler/Import.h"
#include "muse/Target/Cuda/Translate.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Tools/mlir-translate/MlirTranslateMain.h"
#include "mlir/Tools/mlir-translate/Translation.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;

static llvm::cl::opt<std::string>
    shapeOpt("shape", llvm::cl::desc("B,H,Hkv,N,M for --muse-plan-layout"), llvm::cl::init("1,1,1,1,1"));

static void registerDialects(DialectRegistry &registry) {
  registry.insert<mlir::muse::MuseDialect, func::FuncDialect>();
}

/// Runs `fn` on the module's single muse.plan.
template <typename Fn>
static LogicalResult withPlan(Operation *op, Fn fn) {
  FailureOr<mlir::muse::PlanOp> plan = ::muse::findSinglePlan(op);
  if (failed(plan))
    return failure();
  return fn(*plan);
}

static LogicalResult printLayout(const std::shared_ptr<llvm::SourceMgr> &sources,
                                 llvm::raw_ostream &os, MLIRContext *) {
  const llvm::MemoryBuffer *buf = sources->getMemoryBuffer(sources->getMainFileID());
  ::muse::LaunchPlan plan;
  std::string error;
  if (!::muse::LaunchPlan::deserialize(buf->getBuffer().str(), plan, error)) {
    llvm::errs() << "error: " << error << "\n";
    return failure();
  }
  ::muse::Shape shape;
  if (sscanf(shapeOpt.c_str(), "%lld,%lld,%lld,%lld,%lld", (long long *)&shape.B,
             (long long *)&shape.H, (long long *)&shape.Hkv, (long long *)&shape.N,
             (long long *)&shape.M) != 5) {
    llvm::errs() << "error: --shape must be B,H,Hkv,N,M (five integers), got '" << shapeOpt << "'\n";
    return failure();
  }
  std::vector<int64_t> offsets = plan.bufferOffsets(shape);
  for (size_t i = 0; i < plan.buffers.size(); ++i)
    os << plan.buffers[i].name << " offset " << offsets[i] << " bytes "
       << plan.buffers[i].bytes(shape) << "\n";
  os << "workspace " << plan.workspaceBytes(shape) << "\n";
  for (const ::muse::KernelLaunch &l : plan.launches)
    os << "launch " << l.kernel << " grid " << l.grid[0].eval(shape) << " " << l.grid[1].eval(shape)
       << " " << l.grid[2].eval(shape) << " block " << l.block << "\n";
  // Serialising what was parsed must give back the input: the format is stable.
  if (plan.serialize() != buf->getBuffer()) {
    llvm::errs() << "error: the plan does not serialize back to its input text\n";
    return failure();
  }
  return success();
}

int main(int argc, char **argv) {
  TranslateToMLIRRegistration importSpec(
      "muse-import", "YAML spec to a muse.attention module",
      [](llvm::SourceMgr &sources, MLIRContext *context) -> OwningOpRef<Operation *> {
        const llvm::MemoryBuffer *buf = sources.getMemoryBuffer(sources.getMainFileID());
        std::string file = buf->getBufferIdentifier().str();
        ::muse::SpecResult parsed = ::muse::parseSpec(buf->getBuffer().str(), file);
        if (!parsed.ok()) {
          for (const ::muse::SpecDiagnostic &d : parsed.diagnostics)
            llvm::errs() << d.str() << "\n";
          return {};
        }
        ::muse::loadMuseDialects(*context);
        return ::muse::importSpec(*parsed.spec, FileLineColLoc::get(context, file, 1, 1));
      },
      registerDialects);
  TranslateFromMLIRRegistration toCuda(
      "muse-to-cuda", "muse.plan to the kernel translation unit",
      [](Operation *op, llvm::raw_ostream &os) {
        return withPlan(op, [&](mlir::muse::PlanOp plan) { return ::muse::translateToCuda(plan, os); });
      },
      registerDialects);
  TranslateFromMLIRRegistration toHost(
      "muse-to-host", "muse.plan to the C++ launcher",
      [](Operation *op, llvm::raw_ostream &os) {
        return withPlan(op, [&](mlir::muse::PlanOp plan) -> LogicalResult {
          FailureOr<::muse::LaunchPlan> lp = ::muse::buildLaunchPlan(plan);
          if (failed(lp))
            return failure();
          os << ::muse::printHostLauncher(*lp, ::muse::launcherName(plan.getSpec().getName()));
          return success();
        });
      },
      registerDialects);
  TranslateFromMLIRRegistration toPlan(
      "muse-to-plan", "muse.plan to the serialized LaunchPlan",
      [](Operation *op, llvm::raw_ostream &os) {
        return withPlan(op, [&](mlir::muse::PlanOp plan) -> LogicalResult {
          FailureOr<::muse::LaunchPlan> lp = ::muse::buildLaunchPlan(plan);
          if (failed(lp))
            return failure();
          os << lp->serialize();
          return success();
        });
      },
      registerDialects);
  TranslateRegistration layout("muse-plan-layout",
                               "serialized LaunchPlan to its workspace layout for --shape",
                               printLayout);
  return failed(mlirTranslateMain(argc, argv, "muse translation driver\n"));
}
