// Parses an AsyncAPI document with the official parser and prints its diagnostics as JSON lines.
// Exit 0 when the document parses with no error-level diagnostic, 1 otherwise.
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import fs from 'node:fs';

const parser = new Parser();
const { document, diagnostics } = await parser.parse(fs.readFileSync(process.argv[2], 'utf8'));
for (const d of diagnostics) {
  console.log(JSON.stringify({ severity: d.severity, code: d.code, message: d.message, path: d.path }));
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
process.exit(document && errors.length === 0 ? 0 : 1);
