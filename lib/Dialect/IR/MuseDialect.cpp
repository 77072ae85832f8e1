//===- MuseDialect.cpp - Dialect registration and printing aliases --------===//
#include "muse/Dialect/Muse/IR/MuseDialect.h"

#include "mlir/IR/DialectImplementation.h"

using namespace mlir;
using namespace mlir::muse;

#include "muse/Dialect/Muse/IR/MuseDialect.cpp.inc"

namespace {
/// Prints `#spec` and `#sched` aliases so that every stage op does not repeat
/// the whole spec inline.
struct MuseOpAsmInterface : public OpAsmDialectInterface {
  using OpAsmDialectInterface::OpAsmDialectInterface;
  AliasResult getAlias(Attribute attr, raw_ostream &os) const override {
    if (isa<SpecAttr>(attr)) {
      os << "spec";
      return AliasResult::FinalAlias;
    }
    if (isa<ScheduleAttr>(attr)) {
      os << "sched";
      return AliasResult::FinalAlias;
    }
    return AliasResult::NoAlias;
  }
};
} // namespace

void MuseDialect::initialize() {
  registerAttributes();
  addOperations<
#define GET_OP_LIST
#include "muse/Dialect/Muse/IR/MuseOps.cpp.inc"
      >();
  addInterfaces<MuseOpAsmInterface>();
}
