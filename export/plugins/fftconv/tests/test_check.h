// The check macro and counters shared by the plugin's C++ test programs (no test
// framework to download): CHECK counts and reports failures and lets the test go on.
#pragma once

#include <cstdio>

namespace
{
int gFailures = 0;
int gChecks = 0;
} // namespace

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        ++gChecks;                                                                                                     \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            ++gFailures;                                                                                               \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                             \
        }                                                                                                              \
    } while (0)
