// Pictures and voice notes in the workbench's chat panes: the customer app's rendering and
// composer controls (app/media.js), with the workbench's strings.

import { MediaView as AppMediaView, isMediaBody } from "../app/media.js";
import { t } from "./i18n.js";

export { isMediaBody };

export class MediaView extends AppMediaView {
  /** @param {{client: any}} o */
  constructor(o) {
    super({ client: o.client, t });
  }
}
