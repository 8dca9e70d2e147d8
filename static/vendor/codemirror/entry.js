// The parts of CodeMirror 6 the definition editor (static/editor.js) uses, bundled into one file that
// puts them on window.CivicflowCodeMirror (no ES module loading, no CDN). Rebuild with ./build.sh.
import { EditorView, basicSetup } from "codemirror";
import { EditorState } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import { yaml } from "@codemirror/lang-yaml";
import { linter, lintGutter, forceLinting, diagnosticCount } from "@codemirror/lint";

window.CivicflowCodeMirror = {
  EditorView, EditorState, basicSetup, keymap, indentWithTab, yaml, linter, lintGutter, forceLinting, diagnosticCount,
};
