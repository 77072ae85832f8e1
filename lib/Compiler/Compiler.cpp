//===- Compiler.cpp - Spec to CUDA source and launch plan -----------------===//
#include "muse/Compiler/Compiler.h"
#include "muse/Compiler/Import.h"
#include "muse/Dialect/Muse/Transforms/Passes.h"
#include "muse/Target/Cuda/Translate.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

using namespace mlir;
using ::muse::CompileOutput;
using ::muse::LaunchPlan;
using ::muse::Spec;
using ::muse::SpecDiagnostic;

namespace {
/// "file:line:col: error: message" (or "error: message" without a file
/// location), the form of SpecDiagnostic::str(); notes are appended.
std::string formatDiagnostic(Diagnostic &diag) {
  std::string text;
  llvm::raw_string_ostream os(text);
  if (auto loc = dyn_cast<FileLineColLoc>(diag.getLocation()))
    os << loc.getFilename().getValue() << ":" << loc.getLine() << ":" << loc.getColumn() << ": ";
  os << "error: " << diag.str();
  for (Diagnostic &note : diag.getNotes())
    os << " (note: " << note.str() << ")";
  return text;
}

std::string printOp(Operation *op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  op->print(os);
  return text;
}
} // namespace

::muse::CompileOutput (::muse::compileSpec)(const Spec &spec, const std::string &specFile) {
  CompileOutput out;
  for (const SpecDiagnostic &d : validateSpec(spec))
    out.errors.push_back(d.str());
  if (!out.errors.empty())
    return out;

  // One context per compilation, single-threaded: the runtime may compile from
  // any thread and a compilation is far too small to gain from a thread pool.
  MLIRContext context(MLIRContext::Threading::DISABLED);
  context.printOpOnDiagnostic(false);
  loadMuseDialects(context);
  ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
    if (diag.getSeverity() == DiagnosticSeverity::Error)
      out.errors.push_back(formatDiagnostic(diag));
    return success();
  });

  Location loc = specFile.empty() ? Location(NameLoc::get(StringAttr::get(&context, spec.name)))
                                  : Location(FileLineColLoc::get(&context, specFile, 1, 1));
  OwningOpRef<ModuleOp> module = importSpec(spec, loc);
  if (!module) {
    if (out.errors.empty())
      out.errors.push_back("error: could not import spec '" + spec.name + "' into MLIR");
    return out;
  }
  out.mlir = printOp(*module);

  PassManager pm(&context);
  mlir::muse::buildMuseLoweringPipeline(pm);
  if (failed(pm.run(*module))) {
    if (out.errors.empty())
      out.errors.push_back("error: the muse lowering pipeline failed for spec '" + spec.name + "'");
    return out;
  }
  out.lowered = printOp(*module);

  FailureOr<mlir::muse::PlanOp> plan = findSinglePlan(*module);
  if (failed(plan))
    return out;
  llvm::raw_string_ostream cuda(out.cudaSource);
  if (failed(translateToCuda(*plan, cuda)))
    return out;
  FailureOr<LaunchPlan> launchPlan = buildLaunchPlan(*plan);
  if (failed(launchPlan))
    return out;
  out.plan = *launchPlan;
  out.hostSource = printHostLauncher(out.plan, launcherName(spec.name));
  out.ok = out.errors.empty();
  return out;
}

std::vector<std::string> (::muse::nvrtcOptions)(const ::muse::Spec &spec) {
  // -arch=sm_XY (not compute_XY) makes NVRTC emit SASS for exactly this GPU.
  return {"-arch=" + spec.arch, "-std=c++17"};
}
