// The cube API from JavaScript with fetch (Node 18+ or a browser):
//   CDMS_URL=http://127.0.0.1:8000 CDMS_TOKEN=<api key> node examples/fetch.mjs
const url = (process.env.CDMS_URL || "http://127.0.0.1:8000").replace(/\/$/, "") + "/graphql";
const token = process.env.CDMS_TOKEN || "";

async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(url, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  const body = await res.json();
  if (body.errors?.length) {
    throw new Error(body.errors.map((e) => `${e.extensions?.code}: ${e.message}`).join("; "));
  }
  return body.data;
}

const data = await gql(`query ($country: String!) {
  byCategory: cube(where: {customers: {country: {equals: $country}}},
                   orderBy: [{sales: {revenue: DESC}}], limit: 5) {
    products { category }
    sales { revenue orderCount share: revenue(shareOfTotal: true) }
  }
}`, { country: "Germany" });

console.log("top categories in Germany by revenue:");
for (const row of data.byCategory) {
  const s = row.sales;
  console.log(`  ${row.products.category.padEnd(14)} ${Math.round(s.revenue).toLocaleString("en").padStart(10)}` +
    `  ${s.orderCount} orders  ${(s.share * 100).toFixed(1)}% of the country`);
}
