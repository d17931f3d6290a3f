#!/usr/bin/env node
// The `heimdall-torch` command.
import { main } from './cli.js';

void main();
