/* SPDX-License-Identifier: MIT */
/* Subcommands of the `pgm` tool; each returns the process exit status. */
#ifndef PGM_TOOLS_COMMANDS_H
#define PGM_TOOLS_COMMANDS_H

int pgm_cmd_walk(int argc, char **argv);

#endif /* PGM_TOOLS_COMMANDS_H */
