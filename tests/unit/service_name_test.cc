// The naming rules the config check, the compose policy and the planned docker gate share: which
// objects a compose project owns, and which two projects could name the same object.
#include "service_name.h"

#include <gtest/gtest.h>

namespace pgod {
namespace {

TEST(ProjectOwnedName, ProjectThenUnderscoreOrDashThenMore) {
  EXPECT_TRUE(is_project_owned_name("app", "app_db_data")) << "a v1 name or a volume";
  EXPECT_TRUE(is_project_owned_name("app", "app-web-1")) << "a v2 container";
  EXPECT_TRUE(is_project_owned_name("app", "app_default"));
  EXPECT_TRUE(is_project_owned_name("app_db", "app_db_data"));
}

TEST(ProjectOwnedName, AnythingElseIsNot) {
  EXPECT_FALSE(is_project_owned_name("app", "app")) << "the project's own name is no object of it";
  EXPECT_FALSE(is_project_owned_name("app", "app_")) << "nothing after the separator";
  EXPECT_FALSE(is_project_owned_name("app", "app-"));
  EXPECT_FALSE(is_project_owned_name("app", "apple")) << "a prefix without a separator";
  EXPECT_FALSE(is_project_owned_name("app", "app.db"));
  EXPECT_FALSE(is_project_owned_name("app", "web_app_data"));
  EXPECT_FALSE(is_project_owned_name("app", "APP_data")) << "case matters";
  EXPECT_FALSE(is_project_owned_name("app_db", "app_data"));
}

TEST(ProjectOwnedName, EmptyStrings) {
  EXPECT_FALSE(is_project_owned_name("", "_data")) << "an empty project owns nothing";
  EXPECT_FALSE(is_project_owned_name("", "data"));
  EXPECT_FALSE(is_project_owned_name("", ""));
  EXPECT_FALSE(is_project_owned_name("app", ""));
}

TEST(ProjectNamesMayCollide, EqualProjects) {
  EXPECT_TRUE(project_names_may_collide("app", "app"));
  EXPECT_TRUE(project_names_may_collide(compose_project_name("w.b"), compose_project_name("w_b")));
}

TEST(ProjectNamesMayCollide, OneIsTheOtherAndASeparatorInEitherOrder) {
  EXPECT_TRUE(project_names_may_collide("app", "app_db"));
  EXPECT_TRUE(project_names_may_collide("app_db", "app"));
  EXPECT_TRUE(project_names_may_collide("app", "app-db"));
  EXPECT_TRUE(project_names_may_collide("app-db", "app"));
  EXPECT_TRUE(project_names_may_collide("app", compose_project_name("app.db")));
  EXPECT_TRUE(project_names_may_collide("a", "a_b_c"));
}

TEST(ProjectNamesMayCollide, APrefixWithoutSeparatorDoesNot) {
  EXPECT_FALSE(project_names_may_collide("app", "apple"));
  EXPECT_FALSE(project_names_may_collide("apple", "app"));
  EXPECT_FALSE(project_names_may_collide("app_db", "app_web"));
  EXPECT_FALSE(project_names_may_collide("app", "web"));
  EXPECT_FALSE(project_names_may_collide("app", "app_")) << "no object can be named by what follows";
}

TEST(ProjectNamesMayCollide, EmptyStrings) {
  EXPECT_TRUE(project_names_may_collide("", "")) << "equal names are one project";
  EXPECT_FALSE(project_names_may_collide("", "app"));
  EXPECT_FALSE(project_names_may_collide("app", ""));
  EXPECT_FALSE(project_names_may_collide("", "_app"));
}

}  // namespace
}  // namespace pgod
