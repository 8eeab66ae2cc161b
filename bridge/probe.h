// The probe reader of mlxfn's shapeless export (bridge/probe.cpp).
#pragma once

#include <nanobind/nanobind.h>

// Adds read_probe(fun, args, kwargs) to the bridge module.
void add_probe_reader(nanobind::module_& m);
