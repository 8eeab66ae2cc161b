#include "constants.h"

#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/gpu/device_info.h"
#include "mlx/device.h"
#include "mlx/ops.h"
#include "mlx/transforms.h"

namespace mlxfn::detail {

namespace {

constexpr size_t kPrefix = sizeof(size_t);  // the CPU allocator's size field

size_t nbytes_of(const mx::Shape& shape, mx::Dtype dtype) {
  size_t n = dtype.size();
  for (auto d : shape) n *= static_cast<size_t>(d);
  return n;
}

// The checks, each on buffers made here (never on what the allocator hands
// out, which may be recycled), so the answer does not depend on what ran
// before.
std::string check() {
  if (mx::gpu::is_available()) {
    return "a GPU backend is active (its allocator does not keep CPU buffers)";
  }
  if (mx::default_device().type != mx::Device::DeviceType::cpu) {
    return "the default device is not the CPU";
  }
  constexpr int kCount = 4;
  constexpr size_t kBytes = kCount * sizeof(float);
  auto storage = std::make_shared<std::vector<float>>(2 + kCount);
  char* base = reinterpret_cast<char*>(storage->data());
  std::memcpy(base, &kBytes, kPrefix);
  float* values = storage->data() + 2;
  for (int i = 0; i < kCount; ++i) values[i] = float(i + 1);
  mx::allocator::Buffer probe{base};
  if (probe.raw_ptr() != base + kPrefix || mx::allocator::allocator().size(probe) != kBytes) {
    return "MLX's CPU allocator does not keep a buffer's size in the 8 bytes before its data";
  }
  auto deleted = std::make_shared<std::atomic<int>>(0);
  auto foreign = [&]() {
    return mx::array(mx::allocator::Data(mx::allocator::Buffer{base},
                                         [storage, deleted](mx::allocator::Buffer) {
                                           deleted->fetch_add(1);
                                         }),
                     mx::Shape{kCount}, mx::float32);
  };
  {
    mx::array a = foreign();
    if (a.data<float>() != values) return "an array over a foreign buffer does not read it in place";
    if (a.is_donatable()) return "MLX would donate (write into) a buffer it does not own";
  }
  {
    mx::array b = mx::multiply(mx::add(foreign(), mx::array(1.0f)), mx::array(2.0f));
    mx::eval(b);
    for (int i = 0; i < kCount; ++i) {
      if (values[i] != float(i + 1) || b.data<float>()[i] != float(2 * (i + 2))) {
        return "MLX wrote into, or misread, a buffer it does not own";
      }
    }
  }
  mx::synchronize();
  if (deleted->load() != 2) return "the deleter of a foreign buffer did not run once per array";
  return "";
}

void check_prefix(const uint8_t* data, size_t nbytes, const std::string& where) {
  size_t stored = 0;
  std::memcpy(&stored, data - kPrefix, kPrefix);
  if (stored != nbytes) {
    throw std::invalid_argument("the 8 bytes before " + where + " hold " +
                                std::to_string(stored) + ", not the length " +
                                std::to_string(nbytes));
  }
}

}  // namespace

const std::string& mapping_problem() {
  static const std::string problem = [] {
    try {
      return check();
    } catch (const std::exception& e) {
      return std::string("the self-check failed: ") + e.what();
    }
  }();
  return problem;
}

struct Mapping::Region {
  char* base = nullptr;
  size_t length = 0;
  std::atomic<size_t> live{0};  // arrays made by wrap() still alive
  ~Region() {
    if (base != nullptr) munmap(base, length);
  }
};

Mapping::Mapping(int fd, size_t length) : region_(std::make_shared<Region>()) {
  if (length == 0) throw std::invalid_argument("cannot map an empty file");
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  if (base == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap");
  region_->base = static_cast<char*>(base);
  region_->length = length;
}

mx::array Mapping::wrap(size_t offset, const mx::Shape& shape, mx::Dtype dtype) const {
  size_t nbytes = nbytes_of(shape, dtype);
  if (offset < kPrefix || offset % 8 != 0 || nbytes == 0 || offset > region_->length ||
      nbytes > region_->length - offset) {
    throw std::invalid_argument("constant at offset " + std::to_string(offset) + " of " +
                                std::to_string(nbytes) + " bytes does not fit a mapping of " +
                                std::to_string(region_->length) + " bytes");
  }
  char* prefix = region_->base + offset - kPrefix;
  check_prefix(reinterpret_cast<uint8_t*>(prefix) + kPrefix, nbytes,
               "offset " + std::to_string(offset));
  std::shared_ptr<Region> keep = region_;
  keep->live.fetch_add(1);
  // Deleters run on MLX's threads: they only count.
  mx::allocator::Data data(mx::allocator::Buffer{prefix},
                           [keep](mx::allocator::Buffer) { keep->live.fetch_sub(1); });
  return mx::array(std::move(data), shape, dtype);
}

size_t Mapping::length() const { return region_->length; }

size_t Mapping::live_arrays() const { return region_->live.load(); }

mx::array wrap_bytes(const uint8_t* data, const mx::Shape& shape, mx::Dtype dtype,
                     std::shared_ptr<const void> keep) {
  size_t nbytes = nbytes_of(shape, dtype);
  if (nbytes == 0 || reinterpret_cast<uintptr_t>(data) % 8 != 0) {
    throw std::invalid_argument("a constant in memory that is empty or not 8-byte aligned");
  }
  check_prefix(data, nbytes, "a constant in memory");
  auto* prefix = const_cast<uint8_t*>(data - kPrefix);
  mx::allocator::Data owned(mx::allocator::Buffer{prefix}, [keep](mx::allocator::Buffer) {});
  return mx::array(std::move(owned), shape, dtype);
}

mx::array allocate(const mx::Shape& shape, mx::Dtype dtype, uint8_t** data) {
  size_t nbytes = nbytes_of(shape, dtype);
  mx::allocator::Data owned = mx::allocator::malloc(nbytes);
  *data = static_cast<uint8_t*>(owned.buffer().raw_ptr());
  return mx::array(std::move(owned), shape, dtype);
}

}  // namespace mlxfn::detail
