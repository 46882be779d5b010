// Link validator: checks every link offline (no requests are made) and reports problems.
function hostOf(url) {
  const match = /^[a-z]+:\/\/([^\/?#:]+)/i.exec(url);
  return match ? match[1].toLowerCase() : "";
}

function problemsOf(url, shorteners) {
  const problems = [];
  const host = hostOf(url);
  if (/^http:/i.test(url)) problems.push("not https");
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) problems.push("IP address host");
  if (host === "localhost" || host.endsWith(".localhost")) problems.push("points at localhost");
  if (shorteners.indexOf(host) >= 0) problems.push("URL shortener hides the destination");
  if (url.length > 2000) problems.push("longer than 2000 characters");
  return problems;
}

function anchorMismatches(html) {
  const found = [];
  const anchor = /<a\s[^>]*href\s*=\s*["']([^"']+)["'][^>]*>([\s\S]*?)<\/a>/gi;
  for (const m of html.matchAll(anchor)) {
    const href = m[1], label = m[2].replace(/<[^>]*>/g, "").trim();
    if (/^javascript:/i.test(href)) found.push({url: href, problems: ["javascript: link"]});
    const shown = /^https?:\/\/\S+$/i.test(label) ? hostOf(label) : "";
    if (shown && shown !== hostOf(href)) {
      found.push({url: href, problems: [`link text shows ${shown} but goes to ${hostOf(href)}`]});
    }
  }
  return found;
}

function onEmailReceived(email) {
  const shorteners = String(pat.settings.shorteners).split(",").map(s => s.trim().toLowerCase());
  const links = pat.email.links(email).map(url => ({url, problems: problemsOf(url, shorteners)}));
  const report = links.concat(anchorMismatches(email.html || ""));
  const bad = report.filter(link => link.problems.length > 0);
  return {
    headers: {"X-Link-Check": `${links.length} links, ${bad.length} with problems`},
    metadata: {links: report},
  };
}
