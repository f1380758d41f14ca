//===- cuda_driver_test.cpp - The CUDA driver layer, without a GPU -------===//
//
// MOERT_LIBCUDA points the runtime at fake_libcuda.c, whose FAKE_CUDA_MODE
// picks the machine: a driver with no device, zero devices, an sm_80 or an
// sm_90 device; a path that does not exist stands for a machine without a
// driver. Checks the exact messages and statuses, device info through the
// C API, and that the RAII helpers release everything they take.
//
//===----------------------------------------------------------------------===//

#include "moert/moert.h"
#include "runtime/src/cuda_driver.h"

#include "test_util.h"

#include <catch2/catch.hpp>

#include <thread>

using namespace moert;
using namespace moert::cuda;
using namespace moert::test;

namespace {
/// Contexts, buffers, streams and modules the fake driver still holds.
int fakeLive() {
  int live = fakeDriverCounter("fake_live");
  REQUIRE(live >= 0);
  return live;
}

/// moert_cuda_device_info as a status, message and outputs.
struct Info {
  moert_status status;
  std::string error, name;
  int major = -1, minor = -1;
};
Info deviceInfo(int device, size_t nameSize = 64) {
  Info info;
  std::string name(nameSize + 1, '#'); // '#': untouched
  info.status = moert_cuda_device_info(device, name.data(), nameSize,
                                       &info.major, &info.minor);
  info.error = info.status == MOERT_OK ? "" : moert_last_error();
  info.name = name.substr(0, name.find('\0'));
  return info;
}
} // namespace

TEST_CASE("cuda: no driver", "[cuda]") {
  ScopedEnv library("MOERT_LIBCUDA", "/nonexistent/libcuda.so.1");
  const std::string message =
      "CUDA driver not found (/nonexistent/libcuda.so.1: cannot open shared "
      "object file: No such file or directory); --device cuda needs an NVIDIA "
      "driver";
  Failure f = failureOf([] { Driver::load(); });
  CHECK(f.status == MOERT_ERROR_NO_DEVICE);
  CHECK(f.message == message);

  Info info = deviceInfo(0, 8);
  CHECK(info.status == MOERT_ERROR_NO_DEVICE);
  CHECK(info.error == message);
  CHECK(info.name == "#########"); // outputs only on success
  CHECK(info.major == -1);
  CHECK(std::string(moert_status_string(MOERT_ERROR_NO_DEVICE)) ==
        "no CUDA device");
}

TEST_CASE("cuda: this machine's driver, if any", "[cuda]") {
  // No override: the real libcuda.so.1. Without one (the usual build
  // machine) the message names it; with a GPU, device 0 is described.
  ScopedEnv library("MOERT_LIBCUDA", nullptr);
  Info info = deviceInfo(0);
  INFO(info.error);
  if (info.status == MOERT_OK) {
    CHECK(!info.name.empty());
    CHECK(info.major >= 3);
  } else {
    CHECK(info.status == MOERT_ERROR_NO_DEVICE);
    bool known =
        info.error.rfind("CUDA driver not found (libcuda.so.1: ", 0) == 0 ||
        info.error.rfind("no CUDA device", 0) == 0 ||
        info.error.rfind("CUDA driver libcuda.so.1 cannot be initialised", 0) ==
            0;
    CHECK(known);
  }
}

TEST_CASE("cuda: a driver without devices", "[cuda]") {
  {
    FakeDriver fake("no_device");
    Failure f = failureOf([] { Driver::load(); });
    CHECK(f.status == MOERT_ERROR_NO_DEVICE);
    CHECK(f.message == "no CUDA device: cuInit failed with "
                       "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is "
                       "detected)");
    Info info = deviceInfo(0);
    CHECK(info.status == MOERT_ERROR_NO_DEVICE);
    CHECK(info.error == f.message);
  }
  {
    FakeDriver fake("zero_devices");
    std::shared_ptr<const Driver> driver = Driver::load();
    CHECK(driver->deviceCount() == 0);
    Failure f = failureOf([&] { Device::open(driver); });
    CHECK(f.status == MOERT_ERROR_NO_DEVICE);
    CHECK(f.message == "no CUDA device: the driver found none");
    Info info = deviceInfo(0);
    CHECK(info.status == MOERT_ERROR_NO_DEVICE);
    CHECK(info.error == f.message);
  }
  CHECK(fakeLive() == 0);
}

TEST_CASE("cuda: a driver that lacks an entry point", "[cuda]") {
  FakeDriver fake("h200", MOERT_FAKE_LIBCUDA_NO_LAUNCH);
  Failure f = failureOf([] { Driver::load(); });
  CHECK(f.status == MOERT_ERROR_NO_DEVICE);
  CHECK(f.message == std::string("CUDA driver ") +
                         MOERT_FAKE_LIBCUDA_NO_LAUNCH +
                         " has no symbol cuLaunchKernel; a driver for CUDA 11 "
                         "or newer is needed");
}

TEST_CASE("cuda: device info and architecture checks", "[cuda]") {
  {
    FakeDriver fake("h200");
    std::shared_ptr<const Driver> driver = Driver::load();
    CHECK(driver->path() == MOERT_FAKE_LIBCUDA);
    CHECK(driver->version() == 13000);
    CHECK(driver->deviceCount() == 1);
    CHECK(driver->describe(kErrorNoDevice) ==
          "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)");
    CHECK(driver->describe(12345) == "CUDA error 12345");

    DeviceInfo info = driver->deviceInfo(0);
    CHECK(info.name == "Fake H200");
    CHECK(info.smMajor == 9);
    CHECK(info.smMinor == 0);
    CHECK(info.totalMemory == size_t(141) << 30);
    CHECK(info.arch() == "sm_90");

    // The C API: the name cut to fit, NULL outputs, bad device numbers.
    Info c = deviceInfo(0);
    CHECK(c.status == MOERT_OK);
    CHECK(c.name == "Fake H200");
    CHECK(c.major == 9);
    CHECK(c.minor == 0);
    CHECK(deviceInfo(0, 5).name == "Fake");
    CHECK(moert_cuda_device_info(0, nullptr, 0, nullptr, nullptr) == MOERT_OK);
    Info one = deviceInfo(1);
    CHECK(one.status == MOERT_ERROR_NO_DEVICE);
    CHECK(one.error == "no CUDA device 1: the driver found 1 device");
    Info negative = deviceInfo(-1);
    CHECK(negative.status == MOERT_ERROR_INVALID_ARGUMENT);
    CHECK(negative.error == "CUDA device -1 is not a device number");

    std::shared_ptr<const Device> device = Device::open(driver);
    CHECK(device->info().name == "Fake H200");
    device->requireArch("sm_90a");
    device->requireArch("sm_90");
    Failure older = failureOf([&] { device->requireArch("sm_80"); });
    CHECK(older.status == MOERT_ERROR_NO_DEVICE);
    CHECK(older.message == "CUDA device 0 is sm_90; this layer needs sm_80 "
                           "(Ampere)");
    for (const char *bad :
         {"sm90a", "sm_", "sm_9", "sm_09", "sm_9x", "sm_1000"})
      CHECK(failureOf([&] { device->requireArch(bad); }).message ==
            "'" + std::string(bad) +
                "' is not a CUDA architecture (expected e.g. sm_90a)");
  }
  {
    FakeDriver fake("sm80");
    std::shared_ptr<const Device> device = Device::open(Driver::load());
    CHECK(device->info().name == "Fake A100");
    CHECK(device->info().arch() == "sm_80");
    device->requireArch("sm_80");
    device->requireArch("sm_80a");
    Failure hopper = failureOf([&] { device->requireArch("sm_90a"); });
    CHECK(hopper.status == MOERT_ERROR_NO_DEVICE);
    CHECK(hopper.message ==
          "CUDA device 0 is sm_80; this layer needs sm_90a (Hopper)");
    CHECK(failureOf([&] { device->requireArch("sm_86"); }).message ==
          "CUDA device 0 is sm_80; this layer needs sm_86 (Ampere)");
    CHECK(failureOf([&] { device->requireArch("sm_75"); }).message ==
          "CUDA device 0 is sm_80; this layer needs sm_75 (Turing)");
    Info c = deviceInfo(0);
    CHECK(c.name == "Fake A100");
    CHECK(c.major == 8);
  }
  CHECK(fakeLive() == 0); // the primary context was released
}

TEST_CASE("cuda: memory, streams, modules and launches", "[cuda]") {
  FakeDriver fake("h200");
  {
    std::shared_ptr<const Device> device = Device::open(Driver::load());
    Stream stream(device);
    DeviceBuffer buffer(device, 64);
    REQUIRE(buffer.get() != 0);
    CHECK(buffer.size() == 64);

    std::vector<unsigned char> host(64), back(64, 0xee);
    for (size_t i = 0; i < host.size(); ++i)
      host[i] = static_cast<unsigned char>(i);
    stream.upload(buffer, host.data(), 64);
    stream.download(back.data(), buffer, 64);
    stream.synchronize();
    CHECK(back == host);
    stream.download(back.data(), buffer, 4, 60);
    CHECK(back[0] == 60);

    // Kernels by name; "fill" is not "fill_bytes".
    Module module(device, "\177ELF kernels: fill_bytes other", "layer.so");
    Kernel fill = module.kernel("fill_bytes");
    CHECK(fill.name == "fill_bytes");
    CUdeviceptr ptr = buffer.get();
    int value = 7;
    void *params[] = {&ptr, &value};
    stream.zero(buffer);
    stream.launch(fill, {4, 1, 1}, {8, 1, 1}, 0, params);
    stream.download(back.data(), buffer, 64);
    stream.synchronize();
    for (size_t i = 0; i < back.size(); ++i)
      CHECK(int(back[i]) == (i < 32 ? 7 : 0));
    Failure missing = failureOf([&] { module.kernel("fill"); });
    CHECK(missing.status == MOERT_ERROR_ABI);
    CHECK(missing.message ==
          "layer.so: no kernel 'fill' in its GPU code (cuModuleGetFunction "
          "failed with CUDA_ERROR_NOT_FOUND (named symbol not found))");
    Failure image = failureOf([&] { Module(device, "text", "bad.so"); });
    CHECK(image.status == MOERT_ERROR_ABI);
    CHECK(image.message ==
          "bad.so: CUDA device 0: cuModuleLoadData failed with "
          "CUDA_ERROR_INVALID_IMAGE (device kernel image is invalid)");

    // Copies are checked against the buffer; allocations report OOM.
    Failure over = failureOf([&] { stream.upload(buffer, host.data(), 65); });
    CHECK(over.status == MOERT_ERROR_INVALID_ARGUMENT);
    CHECK(over.message == "CUDA device 0: upload of 65 bytes at offset 0 "
                          "overruns a buffer of 64 bytes");
    Failure under =
        failureOf([&] { stream.download(back.data(), buffer, 8, 60); });
    CHECK(under.message == "CUDA device 0: download of 8 bytes at offset 60 "
                           "overruns a buffer of 64 bytes");
    Failure oom = failureOf([&] { DeviceBuffer(device, size_t(2) << 30); });
    CHECK(oom.status == MOERT_ERROR_OUT_OF_MEMORY);
    CHECK(oom.message == "CUDA device 0: cuMemAlloc of 2147483648 bytes "
                         "failed with CUDA_ERROR_OUT_OF_MEMORY (out of "
                         "memory)");
    CHECK(DeviceBuffer(device, 0).get() == 0);

    // Buffers move; a thread that never touched the device can use the
    // helpers (each makes the context current first).
    DeviceBuffer moved = std::move(buffer);
    CHECK(buffer.get() == 0);
    CHECK(moved.get() == ptr);
    Failure elsewhere;
    std::thread other([&] {
      elsewhere = failureOf([&] {
        stream.zero(moved);
        stream.download(back.data(), moved, 64);
        stream.synchronize();
      });
    });
    other.join();
    CHECK(elsewhere.message == "(no error)");
    CHECK(back == std::vector<unsigned char>(64, 0));
    buffer = DeviceBuffer(device, 16);
    buffer = std::move(moved);
    CHECK(buffer.get() == ptr);
  }
  CHECK(fakeLive() == 0); // every buffer, stream, module and context
}
