// Placeholder until this page is built.
import { h, show } from "../dom.js";

export async function render(main) {
  show(main, h("h1", {}, "systems"), h("p", {}, "Not built yet."));
}
