// Syntax-check stub (tests/abi_layout.rs) of the nvonnxparser subset vigil_trt.cpp uses.
#pragma once
#include "NvInfer.h"
namespace nvonnxparser {
class IParserError { public: virtual ~IParserError() = default; char const* desc() const; };
class IParser { public: virtual ~IParser() = default; bool parseFromFile(char const*, int32_t) noexcept;
  int32_t getNbErrors() const noexcept; IParserError const* getError(int32_t) const noexcept; };
IParser* createParser(nvinfer1::INetworkDefinition&, nvinfer1::ILogger&) noexcept;
}
