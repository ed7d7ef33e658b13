// What differs between the Cap'n Proto releases pgod builds with (0.9 on Debian 12, 1.x on
// Debian 13), in one place.
#pragma once

namespace pgod {

// A call whose caller leaves should stop (a dropped `logs -f` ends its compose process).
// Cap'n Proto 1.x decides that from the schema ($Cxx.allowCancellation on the method, see
// proto/CMakeLists.txt) and deletes the run-time switch; 0.9 has only the run-time switch.
template <typename CallContext>
void allow_cancellation([[maybe_unused]] CallContext& context) {
#if !PGOD_CAPNP_CANCELLATION_ANNOTATION
  context.allowCancellation();
#endif
}

}  // namespace pgod
