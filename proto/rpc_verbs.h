// The grammar's verbs and the worker interface's verbs are one list seen from two sides; this
// is the only place that maps between them.
#pragma once

#include <optional>

#include "command_grammar.h"
#include "supervisor.capnp.h"
#include "worker.capnp.h"

namespace pgod {

// The worker's verb for a grammar verb; nullopt for verbs the worker does not run (ping,
// worker restart).
std::optional<rpc::Verb> to_rpc_verb(Verb verb);

// The grammar verb for a worker verb; nullopt for a value this build does not know (an enum
// carries any number on the wire): the worker refuses it, never runs a default.
std::optional<Verb> from_rpc_verb(rpc::Verb verb);

// How a worker's state is written for people: "running", "backing-off", "stopped".
const char* worker_state_name(rpc::ServiceInfo::WorkerState state);

// How a service's state is written in status and logs: "OK", "FROZEN", "BROKEN", ...
const char* service_state_name(rpc::ServiceState state);

}  // namespace pgod
