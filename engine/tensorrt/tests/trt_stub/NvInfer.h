// Syntax-check stub (tests/abi_layout.rs) of the TensorRT API subset vigil_trt.cpp uses, written
// from NVIDIA's 8.6/10.x headers and samples (NV_TENSORRT_MAJOR selects). NOT the real header:
// compiling against it proves syntax and internal consistency, not agreement with TensorRT.
#pragma once
#include <cstddef>
#include <cstdint>
#include "cuda_runtime_api.h"
namespace nvinfer1 {
using AsciiChar = char;
#if NV_TENSORRT_MAJOR >= 10
class Dims64 { public: static constexpr int32_t MAX_DIMS{8}; int32_t nbDims; int64_t d[MAX_DIMS]; };
using Dims = Dims64;
#else
class Dims32 { public: static constexpr int32_t MAX_DIMS{8}; int32_t nbDims; int32_t d[MAX_DIMS]; };
using Dims = Dims32;
#endif
enum class DataType : int32_t { kFLOAT = 0, kHALF = 1, kINT8 = 2, kINT32 = 3, kBOOL = 4, kUINT8 = 5, kFP8 = 6
#if NV_TENSORRT_MAJOR >= 10
  , kBF16 = 7, kINT64 = 8, kINT4 = 9, kFP4 = 10
#endif
};
enum class TensorIOMode : int32_t { kNONE = 0, kINPUT = 1, kOUTPUT = 2 };
class ILogger { public: enum class Severity : int32_t { kINTERNAL_ERROR = 0, kERROR = 1, kWARNING = 2, kINFO = 3, kVERBOSE = 4 };
  virtual void log(Severity severity, AsciiChar const* msg) noexcept = 0; virtual ~ILogger() = default; };
class IHostMemory { public: virtual ~IHostMemory() noexcept = default; void* data() const noexcept; std::size_t size() const noexcept; };
class ICudaEngine;
class IExecutionContext { public: virtual ~IExecutionContext() noexcept = default;
  ICudaEngine const& getEngine() const noexcept; bool setTensorAddress(char const*, void*) noexcept;
  void const* getTensorAddress(char const*) const noexcept; Dims getTensorShape(char const*) const noexcept;
  bool enqueueV3(cudaStream_t) noexcept; };
class ICudaEngine { public: virtual ~ICudaEngine() noexcept = default; int32_t getNbIOTensors() const noexcept;
  char const* getIOTensorName(int32_t) const noexcept; TensorIOMode getTensorIOMode(char const*) const noexcept;
  DataType getTensorDataType(char const*) const noexcept; Dims getTensorShape(char const*) const noexcept;
  int32_t getTensorVectorizedDim(char const*) const noexcept; IExecutionContext* createExecutionContext() noexcept; };
class IRuntime { public: virtual ~IRuntime() noexcept = default; ICudaEngine* deserializeCudaEngine(void const*, std::size_t) noexcept;
  void setDLACore(int32_t) noexcept; int32_t getNbDLACores() const noexcept; };
class ITimingCache { public: virtual ~ITimingCache() noexcept = default; IHostMemory* serialize() const noexcept; };
class INetworkDefinition { public: virtual ~INetworkDefinition() noexcept = default; };
using NetworkDefinitionCreationFlags = uint32_t;
enum class NetworkDefinitionCreationFlag : int32_t { kEXPLICIT_BATCH = 0 };
enum class BuilderFlag : int32_t { kFP16 = 0, kINT8 = 1, kGPU_FALLBACK = 3 };
enum class DeviceType : int32_t { kGPU = 0, kDLA = 1 };
enum class MemoryPoolType : int32_t { kWORKSPACE = 0 };
class IInt8Calibrator { public: virtual int32_t getBatchSize() const noexcept = 0;
  virtual bool getBatch(void* bindings[], char const* names[], int32_t nbBindings) noexcept = 0;
  virtual void const* readCalibrationCache(std::size_t& length) noexcept = 0;
  virtual void writeCalibrationCache(void const* ptr, std::size_t length) noexcept = 0;
  virtual ~IInt8Calibrator() noexcept = default; };
class [[deprecated]] IInt8EntropyCalibrator2 : public IInt8Calibrator {};
#if NV_TENSORRT_MAJOR >= 10
class IProgressMonitor { public: virtual void phaseStart(char const*, char const*, int32_t) noexcept = 0;
  virtual bool stepComplete(char const*, int32_t) noexcept = 0; virtual void phaseFinish(char const*) noexcept = 0;
  virtual ~IProgressMonitor() noexcept = default; };
#endif
class IBuilderConfig { public: virtual ~IBuilderConfig() noexcept = default;
  void setMemoryPoolLimit(MemoryPoolType, std::size_t) noexcept; void setFlag(BuilderFlag) noexcept;
  void setInt8Calibrator(IInt8Calibrator*) noexcept; void setDefaultDeviceType(DeviceType) noexcept; void setDLACore(int32_t) noexcept;
  ITimingCache* createTimingCache(void const*, std::size_t) const noexcept; bool setTimingCache(ITimingCache const&, bool) noexcept;
  ITimingCache const* getTimingCache() const noexcept;
#if NV_TENSORRT_MAJOR >= 10
  void setProgressMonitor(IProgressMonitor*) noexcept;
#endif
};
class IBuilder { public: virtual ~IBuilder() noexcept = default; INetworkDefinition* createNetworkV2(NetworkDefinitionCreationFlags) noexcept;
  IBuilderConfig* createBuilderConfig() noexcept; IHostMemory* buildSerializedNetwork(INetworkDefinition&, IBuilderConfig&) noexcept; };
IRuntime* createInferRuntime(ILogger&) noexcept;
IBuilder* createInferBuilder(ILogger&) noexcept;
}
extern "C" int32_t getInferLibVersion() noexcept;
