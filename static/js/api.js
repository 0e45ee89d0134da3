// The JSON API (DESIGN §6). Every call returns parsed JSON or throws an ApiError.

export class ApiError extends Error {
  constructor(message, field = "", status = 0) {
    super(message);
    this.field = field;
    this.status = status;
  }
}

async function request(method, url, body) {
  const init = {method, headers: {Accept: "application/json"}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    throw new ApiError(`network error: ${err.message}`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(data?.error || `${response.status} ${response.statusText}`,
                       data?.field || "", response.status);
  }
  return data;
}

export const catalog = () => request("GET", "/api/patterns");
export const pattern = (slug) => request("GET", `/api/patterns/${encodeURIComponent(slug)}`);
export const topology = (slug) => request("GET", `/api/topologies/${encodeURIComponent(slug)}`);
export const scenario = (id) => request("GET", `/api/scenarios/${encodeURIComponent(id)}`);
/** Save a document under a new slug; forkedFrom is the slug the page was opened from. */
export const saveTopology = (doc, forkedFrom = null) =>
  request("POST", "/api/topologies", forkedFrom ? {...doc, forked_from: forkedFrom} : doc);
/** The normalised document, or an ApiError naming the field; stores nothing. */
export const validateTopology = (doc) => request("POST", "/api/topologies/validate", doc);
export const verifyRun = (id) => request("GET", `/api/runs/${encodeURIComponent(id)}/verify`);
export const run = (id) => request("GET", `/api/runs/${encodeURIComponent(id)}`);
export const createRun = (body) => request("POST", "/api/runs", body);

/** The websocket URL of a run path, on this page's origin. */
export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
