#include "core/backend.h"

namespace imprint {

Backend& backend_for(const Device& device) {
  if (device.is_cpu()) return cpu_backend();
  return cuda_backend(device.index);
}

}  // namespace imprint
