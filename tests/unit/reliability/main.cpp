//===- main.cpp - Catch2's main for the reliability tests ----------------===//

#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include "reliability_util.h"

// Hidden from discovery ([.]): the ctest fixture "reliability: compile
// layers" runs it once, so that the tests share the compiled layers.
TEST_CASE("compile every layer the reliability tests use",
          "[.compile-layers]") {
  moe::reliability::compileAllLayers();
}
