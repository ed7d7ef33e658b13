// ctl/without_gssapi.cc: what pgoctl has in place of GSS-API. Should libssh ever reach it, every
// call fails cleanly: no handle or buffer is left pointing anywhere, and releasing is harmless.
#include <gssapi/gssapi.h>
#include <gtest/gtest.h>

namespace {

TEST(WithoutGssapiTest, InitiatingAContextIsUnavailableAndProducesNothing) {
  OM_uint32 minor = 42, flags = 7, lifetime = 9;
  gss_ctx_id_t context = GSS_C_NO_CONTEXT;
  gss_OID mech = reinterpret_cast<gss_OID>(&minor);
  char junk[4];
  gss_buffer_desc token{sizeof junk, junk};
  EXPECT_EQ(gss_init_sec_context(&minor, GSS_C_NO_CREDENTIAL, &context, GSS_C_NO_NAME, GSS_C_NO_OID, 0, 0,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER, &mech, &token, &flags, &lifetime),
            GSS_S_UNAVAILABLE);
  EXPECT_TRUE(GSS_ERROR(GSS_S_UNAVAILABLE));
  EXPECT_EQ(minor, 0u);
  EXPECT_EQ(mech, GSS_C_NO_OID);
  EXPECT_EQ(token.length, 0u);
  EXPECT_EQ(token.value, nullptr);
  EXPECT_EQ(flags, 0u);
  EXPECT_EQ(lifetime, 0u);
}

TEST(WithoutGssapiTest, NoCredentialNameOrMechanismIsHad) {
  OM_uint32 minor = 1;
  gss_cred_id_t credential = reinterpret_cast<gss_cred_id_t>(&minor);
  gss_OID_set mechs = reinterpret_cast<gss_OID_set>(&minor);
  EXPECT_EQ(gss_acquire_cred(&minor, GSS_C_NO_NAME, 0, GSS_C_NO_OID_SET, GSS_C_INITIATE, &credential, &mechs, nullptr),
            GSS_S_UNAVAILABLE);
  EXPECT_EQ(credential, GSS_C_NO_CREDENTIAL);
  EXPECT_EQ(mechs, GSS_C_NO_OID_SET);

  gss_name_t name = reinterpret_cast<gss_name_t>(&minor);
  char text[] = "host@example.org";
  gss_buffer_desc buffer{sizeof text - 1, text};
  EXPECT_EQ(gss_import_name(&minor, &buffer, GSS_C_NT_HOSTBASED_SERVICE, &name), GSS_S_UNAVAILABLE);
  EXPECT_EQ(name, GSS_C_NO_NAME);

  gss_OID_set set = reinterpret_cast<gss_OID_set>(&minor);
  EXPECT_EQ(gss_indicate_mechs(&minor, &set), GSS_S_UNAVAILABLE);
  EXPECT_EQ(set, GSS_C_NO_OID_SET);
  set = reinterpret_cast<gss_OID_set>(&minor);
  EXPECT_EQ(gss_create_empty_oid_set(&minor, &set), GSS_S_UNAVAILABLE);
  EXPECT_EQ(set, GSS_C_NO_OID_SET);
  EXPECT_EQ(GSS_C_NT_HOSTBASED_SERVICE, GSS_C_NO_OID);
  EXPECT_EQ(GSS_C_NT_USER_NAME, GSS_C_NO_OID);
}

TEST(WithoutGssapiTest, MessagesAreNeitherSignedNorVerified) {
  OM_uint32 minor = 3;
  char junk[2];
  gss_buffer_desc message{sizeof junk, junk}, mic{sizeof junk, junk};
  EXPECT_EQ(gss_get_mic(&minor, GSS_C_NO_CONTEXT, 0, &message, &mic), GSS_S_UNAVAILABLE);
  EXPECT_EQ(mic.value, nullptr);
  gss_qop_t qop = 5;
  EXPECT_EQ(gss_verify_mic(&minor, GSS_C_NO_CONTEXT, &message, &message, &qop), GSS_S_UNAVAILABLE);
  EXPECT_EQ(qop, 0u);
}

TEST(WithoutGssapiTest, ReleasingIsHarmlessAndEmptiesTheHandle) {
  OM_uint32 minor = 9;
  gss_name_t name = GSS_C_NO_NAME;
  EXPECT_EQ(gss_release_name(&minor, &name), GSS_S_COMPLETE);
  gss_buffer_desc buffer{0, nullptr};
  EXPECT_EQ(gss_release_buffer(&minor, &buffer), GSS_S_COMPLETE);
  EXPECT_EQ(gss_release_buffer(nullptr, GSS_C_NO_BUFFER), GSS_S_COMPLETE);
  gss_cred_id_t credential = GSS_C_NO_CREDENTIAL;
  EXPECT_EQ(gss_release_cred(&minor, &credential), GSS_S_COMPLETE);
  gss_OID_set set = GSS_C_NO_OID_SET;
  EXPECT_EQ(gss_release_oid_set(&minor, &set), GSS_S_COMPLETE);
  gss_ctx_id_t context = GSS_C_NO_CONTEXT;
  EXPECT_EQ(gss_delete_sec_context(&minor, &context, GSS_C_NO_BUFFER), GSS_S_COMPLETE);
  EXPECT_EQ(minor, 0u);
}

}  // namespace
