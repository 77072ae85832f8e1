//===- MuseDialect.h - The muse dialect, its attributes and ops -----------===//
#ifndef MUSE_DIALECT_MUSE_IR_MUSEDIALECT_H
#define MUSE_DIALECT_MUSE_IR_MUSEDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "muse/Target/Cuda/LaunchPlan.h"

#include "muse/Dialect/Muse/IR/MuseDialect.h.inc"
#include "muse/Dialect/Muse/IR/MuseEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "muse/Dialect/Muse/IR/MuseAttrs.h.inc"

#define GET_OP_CLASSES
#include "muse/Dialect/Muse/IR/MuseOps.h.inc"

#endif
