/** The sidebar's version; the server extension must report the same (checked on start). */
export const FRONTEND_VERSION = '0.1.0';
