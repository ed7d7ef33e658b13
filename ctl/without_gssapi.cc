// pgoctl links libssh statically (ctl/CMakeLists.txt) and authenticates with a key file only: it
// never calls ssh_userauth_gssapi, so libssh's GSS-API code is never reached. Debian's libssh.a
// still refers to the GSS-API functions, and the only library defining them is the shared
// Kerberos stack, seven libraries that every pgoctl command would load for nothing (about 1 ms on
// the benchmark host) and that would put Kerberos in a process reading a hostile server's bytes.
// These definitions take their place: every call that would acquire or produce something says
// GSS_S_UNAVAILABLE and leaves its outputs empty, and the release calls have nothing to free.
// The prototypes are checked against <gssapi/gssapi.h>; the list is what the libssh.a of Debian
// 12 (0.10) and 13 (0.11) refer to (`nm -u libssh.a | grep gss_`).
#include <gssapi/gssapi.h>

namespace {

OM_uint32 unavailable(OM_uint32* minor_status) {
  if (minor_status != nullptr) *minor_status = 0;
  return GSS_S_UNAVAILABLE;
}

OM_uint32 nothing_to_release(OM_uint32* minor_status) {
  if (minor_status != nullptr) *minor_status = 0;
  return GSS_S_COMPLETE;
}

template <class Handle>
void clear(Handle* handle, Handle empty) {
  if (handle != nullptr) *handle = empty;
}

void clear(gss_buffer_t buffer) {
  if (buffer == GSS_C_NO_BUFFER) return;
  buffer->length = 0;
  buffer->value = nullptr;
}

}  // namespace

gss_OID GSS_C_NT_USER_NAME = GSS_C_NO_OID;
gss_OID GSS_C_NT_HOSTBASED_SERVICE = GSS_C_NO_OID;

OM_uint32 gss_acquire_cred(OM_uint32* minor_status, gss_name_t, OM_uint32, gss_OID_set, gss_cred_usage_t,
                           gss_cred_id_t* output_cred_handle, gss_OID_set* actual_mechs, OM_uint32* time_rec) {
  clear(output_cred_handle, GSS_C_NO_CREDENTIAL);
  clear(actual_mechs, GSS_C_NO_OID_SET);
  clear(time_rec, OM_uint32{0});
  return unavailable(minor_status);
}

OM_uint32 gss_init_sec_context(OM_uint32* minor_status, gss_cred_id_t, gss_ctx_id_t*, gss_name_t, gss_OID, OM_uint32,
                               OM_uint32, gss_channel_bindings_t, gss_buffer_t, gss_OID* actual_mech_type,
                               gss_buffer_t output_token, OM_uint32* ret_flags, OM_uint32* time_rec) {
  clear(actual_mech_type, GSS_C_NO_OID);
  clear(output_token);
  clear(ret_flags, OM_uint32{0});
  clear(time_rec, OM_uint32{0});
  return unavailable(minor_status);
}

OM_uint32 gss_accept_sec_context(OM_uint32* minor_status, gss_ctx_id_t*, gss_cred_id_t, gss_buffer_t,
                                 gss_channel_bindings_t, gss_name_t* src_name, gss_OID* mech_type,
                                 gss_buffer_t output_token, OM_uint32* ret_flags, OM_uint32* time_rec,
                                 gss_cred_id_t* delegated_cred_handle) {
  clear(src_name, GSS_C_NO_NAME);
  clear(mech_type, GSS_C_NO_OID);
  clear(output_token);
  clear(ret_flags, OM_uint32{0});
  clear(time_rec, OM_uint32{0});
  clear(delegated_cred_handle, GSS_C_NO_CREDENTIAL);
  return unavailable(minor_status);
}

OM_uint32 gss_delete_sec_context(OM_uint32* minor_status, gss_ctx_id_t* context_handle, gss_buffer_t output_token) {
  clear(context_handle, GSS_C_NO_CONTEXT);
  clear(output_token);
  return nothing_to_release(minor_status);
}

OM_uint32 gss_get_mic(OM_uint32* minor_status, gss_ctx_id_t, gss_qop_t, gss_buffer_t, gss_buffer_t message_token) {
  clear(message_token);
  return unavailable(minor_status);
}

OM_uint32 gss_verify_mic(OM_uint32* minor_status, gss_ctx_id_t, gss_buffer_t, gss_buffer_t, gss_qop_t* qop_state) {
  clear(qop_state, gss_qop_t{0});
  return unavailable(minor_status);
}

OM_uint32 gss_import_name(OM_uint32* minor_status, gss_buffer_t, gss_OID, gss_name_t* output_name) {
  clear(output_name, GSS_C_NO_NAME);
  return unavailable(minor_status);
}

OM_uint32 gss_display_name(OM_uint32* minor_status, gss_name_t, gss_buffer_t output_name_buffer,
                           gss_OID* output_name_type) {
  clear(output_name_buffer);
  clear(output_name_type, GSS_C_NO_OID);
  return unavailable(minor_status);
}

OM_uint32 gss_display_status(OM_uint32* minor_status, OM_uint32, int, gss_OID, OM_uint32* message_context,
                             gss_buffer_t status_string) {
  clear(message_context, OM_uint32{0});
  clear(status_string);
  return unavailable(minor_status);
}

OM_uint32 gss_indicate_mechs(OM_uint32* minor_status, gss_OID_set* mech_set) {
  clear(mech_set, GSS_C_NO_OID_SET);
  return unavailable(minor_status);
}

OM_uint32 gss_create_empty_oid_set(OM_uint32* minor_status, gss_OID_set* oid_set) {
  clear(oid_set, GSS_C_NO_OID_SET);
  return unavailable(minor_status);
}

OM_uint32 gss_add_oid_set_member(OM_uint32* minor_status, gss_OID, gss_OID_set*) { return unavailable(minor_status); }

OM_uint32 gss_test_oid_set_member(OM_uint32* minor_status, gss_OID, gss_OID_set, int* present) {
  clear(present, 0);
  return unavailable(minor_status);
}

OM_uint32 gss_inquire_cred(OM_uint32* minor_status, gss_cred_id_t, gss_name_t* name, OM_uint32* lifetime,
                           gss_cred_usage_t* cred_usage, gss_OID_set* mechanisms) {
  clear(name, GSS_C_NO_NAME);
  clear(lifetime, OM_uint32{0});
  clear(cred_usage, gss_cred_usage_t{0});
  clear(mechanisms, GSS_C_NO_OID_SET);
  return unavailable(minor_status);
}

OM_uint32 gss_inquire_cred_by_mech(OM_uint32* minor_status, gss_cred_id_t, gss_OID, gss_name_t* name,
                                   OM_uint32* initiator_lifetime, OM_uint32* acceptor_lifetime,
                                   gss_cred_usage_t* cred_usage) {
  clear(name, GSS_C_NO_NAME);
  clear(initiator_lifetime, OM_uint32{0});
  clear(acceptor_lifetime, OM_uint32{0});
  clear(cred_usage, gss_cred_usage_t{0});
  return unavailable(minor_status);
}

OM_uint32 gss_release_buffer(OM_uint32* minor_status, gss_buffer_t buffer) {
  clear(buffer);
  return nothing_to_release(minor_status);
}

OM_uint32 gss_release_cred(OM_uint32* minor_status, gss_cred_id_t* cred_handle) {
  clear(cred_handle, GSS_C_NO_CREDENTIAL);
  return nothing_to_release(minor_status);
}

OM_uint32 gss_release_name(OM_uint32* minor_status, gss_name_t* name) {
  clear(name, GSS_C_NO_NAME);
  return nothing_to_release(minor_status);
}

OM_uint32 gss_release_oid(OM_uint32* minor_status, gss_OID* oid) {
  clear(oid, GSS_C_NO_OID);
  return nothing_to_release(minor_status);
}

OM_uint32 gss_release_oid_set(OM_uint32* minor_status, gss_OID_set* set) {
  clear(set, GSS_C_NO_OID_SET);
  return nothing_to_release(minor_status);
}
