// Text from the data (a city, a product's name, a category, a segment) as Plotly must be
// given it. Plotly reads every label, legend name and tooltip as its pseudo-HTML: `<a href>`
// is a link, `<span style>` restyles, `<b>` is bold. Escaped, `<`, `>` and `&` show as they
// are (Plotly turns `&lt;`, `&gt;` and `&amp;` back into the characters after reading its
// tags). The dashboard's charts and GraphiQL's cube builder both import this file.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };

/** `value` as Plotly text, shown letter for letter (null and undefined as they are). */
export function plotText(value) {
  return value == null ? value : String(value).replace(/[&<>]/g, (c) => ESCAPES[c]);
}
