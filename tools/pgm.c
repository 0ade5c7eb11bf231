/* SPDX-License-Identifier: MIT */
/* The `pgm` command-line tool: libpgm's functions from the shell. */
#include <stdio.h>
#include <string.h>

#include "pgm/pgm.h"
#include "tools/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    { "walk", pgm_cmd_walk, "walk cases from stdin through the guest walker" },
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: pgm COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "  version  print the library version\n\nSee README.md, \"The pgm tool\".\n");
}

int
main(int argc, char **argv)
{
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        fprintf(stderr, "pgm: the tool assumes a little-endian host\n");
        return 1;
    }
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("pgm %s\n", pgm_version());
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "pgm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
