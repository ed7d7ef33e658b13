#include "service_name.h"

#include <algorithm>

namespace pgod {
namespace {
bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
}  // namespace

bool is_valid_service_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxServiceNameLength) return false;
  if (!is_lower_alnum(name.front())) return false;
  if (name.find("..") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return is_lower_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

std::string compose_project_name(std::string_view service_name) {
  std::string project(service_name);
  std::replace(project.begin(), project.end(), '.', '_');
  return project;
}

bool is_project_owned_name(std::string_view project, std::string_view name) {
  if (project.empty() || name.size() <= project.size() + 1 || !name.starts_with(project)) return false;
  const char separator = name[project.size()];
  return separator == '_' || separator == '-';
}

bool project_names_may_collide(std::string_view a, std::string_view b) {
  if (a == b) return true;
  const auto shorter = a.size() < b.size() ? a : b;
  const auto longer = a.size() < b.size() ? b : a;
  return is_project_owned_name(shorter, longer);
}

}  // namespace pgod
