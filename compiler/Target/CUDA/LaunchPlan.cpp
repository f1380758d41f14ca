//===- LaunchPlan.cpp - A GPU layer's host code as data -------------------===//

#include "compiler/Target/CUDA/LaunchPlan.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::moe;
namespace json = llvm::json;

namespace {
llvm::Error error(Operation *op, const llvm::Twine &message) {
  std::string location;
  llvm::raw_string_ostream os(location);
  op->getLoc().print(os);
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "launch plan: " + message + " (" +
                                     op->getName().getStringRef() + " at " +
                                     location + ")");
}

std::string dtypeName(Type type) {
  if (type.isF32())
    return "f32";
  if (type.isBF16())
    return "bf16";
  if (type.isF16())
    return "f16";
  if (type.isInteger(64) || type.isIndex())
    return "i64";
  if (type.isInteger(32))
    return "i32";
  if (type.isInteger(8))
    return "i8";
  return "";
}

class PlanBuilder {
public:
  explicit PlanBuilder(func::FuncOp entry) : entry(entry) {}

  llvm::Expected<json::Object> build() {
    for (Operation &op : entry.getBody().front())
      if (llvm::Error err = visit(&op))
        return std::move(err);
    json::Object plan;
    plan["buffers"] = std::move(buffers);
    plan["steps"] = std::move(steps);
    plan["results"] = std::move(results);
    return plan;
  }

private:
  llvm::Error visit(Operation *op) {
    return llvm::TypeSwitch<Operation *, llvm::Error>(op)
        .Case<bufferization::ToBufferOp>([&](auto toBuffer) -> llvm::Error {
          Value source = toBuffer.getTensor();
          if (auto arg = dyn_cast<BlockArgument>(source)) {
            setRef(toBuffer.getResult(),
                   json::Object{{"arg", int64_t(arg.getArgNumber())}});
            argOf[toBuffer.getResult()] = arg.getArgNumber();
            return llvm::Error::success();
          }
          auto it = refs.find(source);
          if (it == refs.end())
            return error(op, "reads a tensor that is not an argument or a "
                             "buffer");
          setRef(toBuffer.getResult(), it->second);
          shapeOf(toBuffer.getResult(), source);
          return llvm::Error::success();
        })
        .Case<bufferization::ToTensorOp>([&](auto toTensor) -> llvm::Error {
          auto it = refs.find(toTensor.getBuffer());
          if (it == refs.end())
            return error(op, "wraps a buffer the plan does not know");
          setRef(toTensor.getResult(), it->second);
          shapeOf(toTensor.getResult(), toTensor.getBuffer());
          return llvm::Error::success();
        })
        .Case<memref::CastOp>([&](memref::CastOp cast) -> llvm::Error {
          auto it = refs.find(cast.getSource());
          if (it == refs.end())
            return error(op, "casts a buffer the plan does not know");
          setRef(cast.getResult(), it->second);
          shapeOf(cast.getResult(), cast.getSource());
          return llvm::Error::success();
        })
        .Case<nvgpu::TmaCreateDescriptorOp>(
            [&](nvgpu::TmaCreateDescriptorOp create) -> llvm::Error {
              auto it = refs.find(create.getTensor());
              if (it == refs.end())
                return error(op, "a tensor map of a buffer the plan does "
                                 "not know");
              auto type = create.getTensorMap().getType();
              if (type.getSwizzle() !=
                      nvgpu::TensorMapSwizzleKind::SWIZZLE_128B ||
                  type.getOob() != nvgpu::TensorMapOOBKind::OOB_ZERO ||
                  type.getInterleave() !=
                      nvgpu::TensorMapInterleaveKind::INTERLEAVE_NONE)
                return error(op, "a tensor map other than 128-byte swizzled, "
                                 "zero-filled and not interleaved");
              json::Array box;
              for (Value size : create.getBoxDimensions()) {
                std::optional<int64_t> constant = getConstantIntValue(size);
                if (!constant)
                  return error(op, "a tensor map box that is not constant");
                box.push_back(*constant);
              }
              maps.insert_or_assign(
                  create.getTensorMap(),
                  json::Object{{"tensor_map", it->second},
                               {"box", std::move(box)}});
              return llvm::Error::success();
            })
        .Case<UnrealizedConversionCastOp>(
            [&](UnrealizedConversionCastOp cast) -> llvm::Error {
              // The map as the kernel's pointer parameter takes it.
              auto it = cast.getInputs().size() == 1
                            ? maps.find(cast.getInputs()[0])
                            : maps.end();
              if (it == maps.end() || cast.getNumResults() != 1)
                return error(op, "a cast the launch plan cannot express");
              maps.insert_or_assign(cast.getResult(0), it->second);
              return llvm::Error::success();
            })
        .Case<arith::ConstantIndexOp>([&](auto constant) -> llvm::Error {
          setExpr(constant.getResult(), constant.value());
          return llvm::Error::success();
        })
        .Case<arith::ConstantIntOp>([&](auto) -> llvm::Error {
          // Dynamic shared memory sizes, read where launched.
          return llvm::Error::success();
        })
        .Case<memref::DimOp, tensor::DimOp>([&](auto dim) -> llvm::Error {
          std::optional<int64_t> d = dim.getConstantIndex();
          if (!d)
            return error(op, "a dimension that is not a constant");
          Value source = dim.getSource();
          auto type = cast<ShapedType>(source.getType());
          if (!type.isDynamicDim(*d)) {
            setExpr(dim.getResult(), type.getDimSize(*d));
            return llvm::Error::success();
          }
          // Arguments: their one dynamic dimension is the token count.
          if (isa<BlockArgument>(source) || argOf.count(source)) {
            setExpr(dim.getResult(), "T");
            return llvm::Error::success();
          }
          auto it = dynamicSizes.find(source);
          if (it == dynamicSizes.end() || *d >= int64_t(it->second.size()))
            return error(op, "the size of a buffer the plan does not know");
          setExpr(dim.getResult(), it->second[*d]);
          return llvm::Error::success();
        })
        .Case<arith::AddIOp, arith::SubIOp, arith::MulIOp, arith::DivUIOp,
              arith::CeilDivUIOp, arith::RemUIOp, arith::MinUIOp,
              arith::MaxUIOp>([&](auto binary) -> llvm::Error {
          StringRef name = binary->getName().stripDialect();
          auto lhs = exprs.find(binary.getLhs());
          auto rhs = exprs.find(binary.getRhs());
          if (lhs == exprs.end() || rhs == exprs.end())
            return error(op, "an operand that is not index arithmetic on "
                             "the token count");
          setExpr(binary.getResult(),
                  json::Array{name, lhs->second, rhs->second});
          return llvm::Error::success();
        })
        .Case<gpu::AllocOp>([&](gpu::AllocOp alloc) -> llvm::Error {
          MemRefType type = alloc.getType();
          std::string dtype = dtypeName(type.getElementType());
          if (dtype.empty())
            return error(op, "an element type the runtime cannot allocate");
          json::Array shape;
          SmallVector<json::Value> sizes;
          auto dynamic = alloc.getDynamicSizes().begin();
          for (int64_t size : type.getShape()) {
            if (!ShapedType::isDynamic(size)) {
              shape.push_back(size);
              sizes.push_back(size);
              continue;
            }
            auto it = exprs.find(*dynamic++);
            if (it == exprs.end())
              return error(op, "a size that is not index arithmetic on the "
                               "token count");
            shape.push_back(it->second);
            sizes.push_back(it->second);
          }
          int64_t id = int64_t(buffers.size());
          buffers.push_back(
              json::Object{{"dtype", dtype}, {"shape", std::move(shape)}});
          setRef(alloc.getMemref(), json::Object{{"buffer", id}});
          dynamicSizes[alloc.getMemref()] = std::move(sizes);
          return llvm::Error::success();
        })
        .Case<gpu::LaunchFuncOp>([&](gpu::LaunchFuncOp launch) -> llvm::Error {
          json::Array grid, block, args;
          gpu::KernelDim3 g = launch.getGridSizeOperandValues();
          gpu::KernelDim3 b = launch.getBlockSizeOperandValues();
          for (Value v : {g.x, g.y, g.z, b.x, b.y, b.z}) {
            auto it = exprs.find(v);
            if (it == exprs.end())
              return error(op, "a launch size that is not index arithmetic "
                               "on the token count");
            (grid.size() < 3 ? grid : block).push_back(it->second);
          }
          for (Value operand : launch.getKernelOperands()) {
            if (auto map = maps.find(operand); map != maps.end()) {
              args.push_back(map->second);
              continue;
            }
            auto it = refs.find(operand);
            if (it == refs.end() || !isa<MemRefType>(operand.getType()))
              return error(op, "a kernel operand that is not a buffer or a "
                               "tensor map");
            args.push_back(it->second);
          }
          json::Object step{{"launch", launch.getKernelName().getValue()},
                            {"grid", std::move(grid)},
                            {"block", std::move(block)},
                            {"args", std::move(args)}};
          if (Value shared = launch.getDynamicSharedMemorySize()) {
            std::optional<int64_t> bytes = getConstantIntValue(shared);
            if (!bytes)
              return error(op, "dynamic shared memory that is not constant");
            step["shared_bytes"] = *bytes;
          }
          steps.push_back(std::move(step));
          return llvm::Error::success();
        })
        .Case<gpu::DeallocOp>([&](gpu::DeallocOp dealloc) -> llvm::Error {
          auto it = refs.find(dealloc.getMemref());
          if (it == refs.end())
            return error(op, "frees a buffer the plan does not know");
          steps.push_back(json::Object{
              {"free", *it->second.getAsObject()->getInteger("buffer")}});
          return llvm::Error::success();
        })
        .Case<func::ReturnOp>([&](func::ReturnOp ret) -> llvm::Error {
          for (Value operand : ret.getOperands()) {
            auto it = refs.find(operand);
            if (it == refs.end())
              return error(op, "returns a value that is not a buffer");
            results.push_back(it->second);
          }
          return llvm::Error::success();
        })
        .Default([&](Operation *other) -> llvm::Error {
          return error(other, "host code the launch plan cannot express");
        });
  }

  // json::Value has no default state, so no operator[].
  void setExpr(Value v, json::Value e) {
    exprs.insert_or_assign(v, std::move(e));
  }
  void setRef(Value v, json::Value r) {
    refs.insert_or_assign(v, std::move(r));
  }

  /// A tensor or buffer view shares its source's sizes.
  void shapeOf(Value view, Value source) {
    auto it = dynamicSizes.find(source);
    if (it != dynamicSizes.end())
      dynamicSizes[view] = it->second;
    auto arg = argOf.find(source);
    if (arg != argOf.end())
      argOf[view] = arg->second;
  }

  func::FuncOp entry;
  json::Array buffers, steps, results;
  llvm::DenseMap<Value, json::Value> exprs;
  llvm::DenseMap<Value, json::Value> refs;
  llvm::DenseMap<Value, json::Value> maps; // tensor maps, as launch args
  llvm::DenseMap<Value, SmallVector<json::Value>> dynamicSizes;
  llvm::DenseMap<Value, unsigned> argOf;
};
} // namespace

llvm::Expected<json::Object> mlir::moe::buildLaunchPlan(func::FuncOp entry) {
  return PlanBuilder(entry).build();
}
